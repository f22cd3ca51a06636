//! RotNet's pretext data (Gidaris et al. 2018): every image shown at 0, 90, 180 and 270 degrees,
//! labelled by the rotation (0..4), so a plain classifier can be trained on it.
//!
//! Rotations are counter-clockwise, as NumPy's `rot90`: for `k = 1`, `out[y][x] = in[x][s-1-y]`.
//! Only square images rotate without resampling, so only those are accepted.

use super::SelfsupError;

/// Rotates one `(c, s, s)` image by `k * 90` degrees counter-clockwise (`k` taken mod 4).
pub fn rotate(img: &[u8], c: usize, s: usize, k: u32) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    let plane = s * s;
    for ch in 0..c {
        let src = &img[ch * plane..(ch + 1) * plane];
        let dst = &mut out[ch * plane..(ch + 1) * plane];
        for y in 0..s {
            for x in 0..s {
                let (sy, sx) = match k % 4 {
                    0 => (y, x),
                    1 => (x, s - 1 - y),
                    2 => (s - 1 - y, s - 1 - x),
                    _ => (s - 1 - x, y),
                };
                dst[y * s + x] = src[sy * s + sx];
            }
        }
    }
    out
}

/// The four rotations of each of `n` square `(c, s, s)` images, image after image (so image
/// `i` at `k * 90` degrees is entry `4 i + k`), with the rotation index as the label.
pub fn rotation_set(
    pixels: &[u8],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<(Vec<u8>, Vec<u32>), SelfsupError> {
    if h != w {
        return Err(SelfsupError::invalid(format!(
            "RotNet needs square images to rotate without resampling; these are {h}x{w}"
        )));
    }
    let len = c * h * w;
    if pixels.len() != n * len {
        return Err(SelfsupError::invalid(format!("{} pixels for {n} images of {c}x{h}x{w}", pixels.len())));
    }
    let mut out = Vec::with_capacity(4 * pixels.len());
    let mut labels = Vec::with_capacity(4 * n);
    for img in pixels.chunks_exact(len.max(1)) {
        for k in 0..4 {
            out.extend(rotate(img, c, h, k));
            labels.push(k);
        }
    }
    Ok((out, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turn_matches_numpy_rot90() {
        // np.rot90([[1, 2], [3, 4]]) == [[2, 4], [1, 3]]
        assert_eq!(rotate(&[1, 2, 3, 4], 1, 2, 1), vec![2, 4, 1, 3]);
        assert_eq!(rotate(&[1, 2, 3, 4], 1, 2, 2), vec![4, 3, 2, 1]);
        assert_eq!(rotate(&[1, 2, 3, 4], 1, 2, 3), vec![3, 1, 4, 2]);
    }

    #[test]
    fn rotating_back_by_the_labels_angle_restores_the_original() {
        let (c, s, n) = (2, 5, 3);
        let pixels: Vec<u8> = (0..n * c * s * s).map(|v| (v * 7 % 251) as u8).collect();
        let (rotated, labels) = rotation_set(&pixels, n, c, s, s).unwrap();
        assert_eq!(labels, vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        let len = c * s * s;
        for (j, (img, &k)) in rotated.chunks_exact(len).zip(&labels).enumerate() {
            let original = &pixels[(j / 4) * len..(j / 4 + 1) * len];
            assert_eq!(rotate(img, c, s, 4 - k), original, "entry {j}");
            if k != 0 {
                assert_ne!(img, original, "entry {j} was not rotated");
            }
        }
    }

    #[test]
    fn non_square_images_are_rejected() {
        let err = rotation_set(&[0; 6], 1, 1, 2, 3).unwrap_err();
        assert!(err.to_string().contains("square"), "{err}");
    }
}
