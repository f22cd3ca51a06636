//! The one font used for layout and rasterisation: DejaVu Sans, embedded from the
//! `dejavu` crate so figures render identically on machines without any system fonts
//! (CI, fresh containers). DejaVu is also matplotlib's default face, which keeps the
//! figures looking like the usual paper plots.
//!
//! Licence: DejaVu fonts are Bitstream Vera derivatives (free to use, modify and
//! redistribute; DejaVu changes are public domain); the `dejavu` crate is MIT/Apache-2.0.

use std::sync::OnceLock;

use ttf_parser::{Face, GlyphId, OutlineBuilder};

/// Family list written into SVG text; viewers without DejaVu get a close substitute
/// (the layout was measured with DejaVu, whose metrics Verdana resembles).
pub(crate) const SVG_FONT_FAMILY: &str = "'DejaVu Sans', 'Bitstream Vera Sans', Verdana, sans-serif";

/// The parsed embedded face, or `None` if it failed to parse (never expected).
fn face() -> Option<&'static Face<'static>> {
    static FACE: OnceLock<Option<Face<'static>>> = OnceLock::new();
    FACE.get_or_init(|| Face::parse(dejavu::sans::regular(), 0).ok()).as_ref()
}

/// Fallback advance (in em) when no font is available: DejaVu's average is ~0.6 em.
const FALLBACK_ADVANCE_EM: f32 = 0.6;

/// Pen positions of each character's glyph in a string, in em units, plus the total width.
fn layout(text: &str) -> (Vec<(Option<GlyphId>, f32)>, f32) {
    let Some(face) = face() else {
        let n = text.chars().count() as f32;
        return (Vec::new(), n * FALLBACK_ADVANCE_EM);
    };
    let upem = f32::from(face.units_per_em());
    let mut pen = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    let mut out = Vec::new();
    for c in text.chars() {
        let gid = face.glyph_index(c);
        if let (Some(a), Some(b)) = (prev, gid) {
            pen += kerning(face, a, b) / upem;
        }
        out.push((gid, pen));
        let adv = gid.and_then(|g| face.glyph_hor_advance(g)).map_or(FALLBACK_ADVANCE_EM, |a| f32::from(a) / upem);
        pen += adv;
        prev = gid;
    }
    (out, pen)
}

/// Pair kerning from the legacy `kern` table (what most SVG viewers apply too).
fn kerning(face: &Face<'_>, a: GlyphId, b: GlyphId) -> f32 {
    face.tables()
        .kern
        .iter()
        .flat_map(|k| k.subtables)
        .filter(|s| s.horizontal && !s.variable)
        .find_map(|s| s.glyphs_kerning(a, b))
        .map_or(0.0, f32::from)
}

/// Width of `text` at font size `size` (px per em).
pub(crate) fn text_width(text: &str, size: f32) -> f32 {
    layout(text).1 * size
}

/// Receives glyph outlines in the text's local coordinates (x right, y down, baseline at 0).
pub(crate) trait PathSink {
    /// Starts a contour.
    fn move_to(&mut self, x: f32, y: f32);
    /// Straight segment.
    fn line_to(&mut self, x: f32, y: f32);
    /// Quadratic Bezier.
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32);
    /// Cubic Bezier.
    fn cubic_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32);
    /// Closes the contour.
    fn close(&mut self);
}

/// Adapts font units (y up, per-glyph origin) to text-local pixels (y down).
struct Adapter<'a, S: PathSink> {
    sink: &'a mut S,
    scale: f32,
    dx: f32,
}

impl<S: PathSink> Adapter<'_, S> {
    fn p(&self, x: f32, y: f32) -> (f32, f32) {
        (self.dx + x * self.scale, -y * self.scale)
    }
}

impl<S: PathSink> OutlineBuilder for Adapter<'_, S> {
    fn move_to(&mut self, x: f32, y: f32) {
        let (x, y) = self.p(x, y);
        self.sink.move_to(x, y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        let (x, y) = self.p(x, y);
        self.sink.line_to(x, y);
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        let (a, b) = self.p(x1, y1);
        let (x, y) = self.p(x, y);
        self.sink.quad_to(a, b, x, y);
    }
    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        let (a, b) = self.p(x1, y1);
        let (c, d) = self.p(x2, y2);
        let (x, y) = self.p(x, y);
        self.sink.cubic_to(a, b, c, d, x, y);
    }
    fn close(&mut self) {
        self.sink.close();
    }
}

/// Emits the outlines of `text` at `size`, starting at x = 0 on the baseline y = 0.
/// Returns false if no font is available (the caller then skips the text).
pub(crate) fn outline_text<S: PathSink>(text: &str, size: f32, sink: &mut S) -> bool {
    let Some(face) = face() else {
        return false;
    };
    let scale = size / f32::from(face.units_per_em());
    let (glyphs, _) = layout(text);
    for (gid, pen) in glyphs {
        if let Some(gid) = gid {
            let mut adapter = Adapter { sink: &mut *sink, scale, dx: pen * size };
            // Spaces and other blank glyphs have no outline; that is not an error.
            let _ = face.outline_glyph(gid, &mut adapter);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_parses_and_measures() {
        assert!(face().is_some());
        let w1 = text_width("i", 10.0);
        let w2 = text_width("W", 10.0);
        assert!(w1 > 1.0 && w2 > w1, "{w1} {w2}");
        // Widths add up (no kerning between digits in DejaVu).
        let w = text_width("10", 12.0);
        assert!((w - 2.0 * text_width("1", 12.0)).abs() < 1e-3, "{w}");
    }
}
