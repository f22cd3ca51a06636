//! A PNG contact sheet of clips for a person to look at: one clip per row, its frames left to
//! right, each pixel drawn as a `zoom x zoom` block, rows and frames separated by a dark-blue line.

use tiny_skia::{IntSize, Pixmap};

/// Geometry of the clips in a buffer (`[N, 1, T, H, W]` u8).
#[derive(Clone, Copy, Debug)]
pub struct StripLayout {
    /// Frames per clip.
    pub frames: usize,
    /// Frame side.
    pub size: usize,
    /// Pixel magnification.
    pub zoom: usize,
}

const GAP: usize = 2;
const GAP_RGB: [u8; 3] = [20, 30, 90];

/// PNG bytes showing clips `rows` of `pixels`.
pub fn png_strip(pixels: &[u8], rows: &[usize], layout: StripLayout) -> Result<Vec<u8>, String> {
    let StripLayout { frames, size, zoom } = layout;
    let cell = size * zoom;
    let width = frames * cell + (frames + 1) * GAP;
    let height = rows.len().max(1) * cell + (rows.len().max(1) + 1) * GAP;
    let mut rgba = vec![0u8; width * height * 4];
    for px in rgba.chunks_exact_mut(4) {
        px.copy_from_slice(&[GAP_RGB[0], GAP_RGB[1], GAP_RGB[2], 255]);
    }
    let clip_len = frames * size * size;
    for (r, &clip) in rows.iter().enumerate() {
        let src = &pixels[clip * clip_len..(clip + 1) * clip_len];
        for t in 0..frames {
            let (x0, y0) = (GAP + t * (cell + GAP), GAP + r * (cell + GAP));
            for y in 0..cell {
                for x in 0..cell {
                    let v = src[t * size * size + (y / zoom) * size + x / zoom];
                    let o = ((y0 + y) * width + x0 + x) * 4;
                    rgba[o..o + 4].copy_from_slice(&[v, v, v, 255]);
                }
            }
        }
    }
    let dims = IntSize::from_wh(width as u32, height as u32).ok_or("empty strip")?;
    let pixmap = Pixmap::from_vec(rgba, dims).ok_or("bad strip size")?;
    pixmap.encode_png().map_err(|e| e.to_string())
}
