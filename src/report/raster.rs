//! Rasterises a [`Scene`] with tiny-skia (anti-aliased, pure Rust) and encodes it as PNG.
//! Text is drawn from the embedded font's glyph outlines, so no system font is needed.

use tiny_skia::{FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Rect, Stroke, StrokeDash, Transform};

use super::font::{outline_text, text_width, PathSink};
use super::scene::{Anchor, Item, Rgb, Scene};

/// Collects glyph outlines into a tiny-skia path.
struct Builder(PathBuilder);

impl PathSink for Builder {
    fn move_to(&mut self, x: f32, y: f32) {
        self.0.move_to(x, y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.0.line_to(x, y);
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        self.0.quad_to(x1, y1, x, y);
    }
    fn cubic_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        self.0.cubic_to(x1, y1, x2, y2, x, y);
    }
    fn close(&mut self) {
        self.0.close();
    }
}

fn paint(c: Rgb) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color_rgba8(c.0, c.1, c.2, 255);
    p.anti_alias = true;
    p
}

fn polyline(points: &[(f32, f32)]) -> Option<tiny_skia::Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.finish()
}

fn polygon(points: &[(f32, f32)]) -> Option<tiny_skia::Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.close();
    pb.finish()
}

/// Renders `scene` at `scale` device pixels per figure unit and returns PNG bytes.
pub(crate) fn render_png(scene: &Scene, scale: f32) -> Result<Vec<u8>, String> {
    let w = (scene.width * scale).ceil() as u32;
    let h = (scene.height * scale).ceil() as u32;
    let mut pm = Pixmap::new(w, h).ok_or_else(|| format!("invalid image size {w}x{h}"))?;
    pm.fill(tiny_skia::Color::WHITE);
    let base = Transform::from_scale(scale, scale);

    for item in &scene.items {
        match item {
            Item::Rect { x, y, w, h, fill, stroke } => {
                let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else {
                    continue;
                };
                let path = PathBuilder::from_rect(rect);
                if let Some(c) = fill {
                    pm.fill_path(&path, &paint(*c), FillRule::Winding, base, None);
                }
                if let Some((c, width)) = stroke {
                    let st = Stroke { width: *width, ..Stroke::default() };
                    pm.stroke_path(&path, &paint(*c), &st, base, None);
                }
            }
            Item::Segment { from, to, color, width } => {
                if let Some(path) = polyline(&[*from, *to]) {
                    let st = Stroke { width: *width, ..Stroke::default() };
                    pm.stroke_path(&path, &paint(*color), &st, base, None);
                }
            }
            Item::Polyline { points, color, width, dash, .. } => {
                if let Some(path) = polyline(points) {
                    let st = Stroke {
                        width: *width,
                        line_cap: LineCap::Round,
                        line_join: LineJoin::Round,
                        dash: dash.and_then(|(a, b)| StrokeDash::new(vec![a, b], 0.0)),
                        ..Stroke::default()
                    };
                    pm.stroke_path(&path, &paint(*color), &st, base, None);
                }
            }
            Item::Marker { x, y, r, shape, color } => {
                let path = match shape.polygon(*x, *y, *r) {
                    None => PathBuilder::from_circle(*x, *y, *r),
                    Some(poly) => polygon(&poly),
                };
                if let Some(path) = path {
                    pm.fill_path(&path, &paint(*color), FillRule::Winding, base, None);
                }
            }
            Item::Text { x, y, text, size, anchor, vertical, color } => {
                let mut b = Builder(PathBuilder::new());
                if !outline_text(text, *size, &mut b) {
                    continue;
                }
                let Some(path) = b.0.finish() else {
                    continue; // all-blank text
                };
                let shift = match anchor {
                    Anchor::Start => 0.0,
                    Anchor::Middle => -text_width(text, *size) / 2.0,
                    Anchor::End => -text_width(text, *size),
                };
                // Place the text-local origin at the anchor, rotate about it, then shift along the baseline.
                let mut t = base.pre_translate(*x, *y);
                if *vertical {
                    t = t.pre_rotate(-90.0);
                }
                t = t.pre_translate(shift, 0.0);
                pm.fill_path(&path, &paint(*color), FillRule::Winding, t, None);
            }
        }
    }
    pm.encode_png().map_err(|e| e.to_string())
}
