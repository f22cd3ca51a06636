//! A tiny retained drawing (lines, markers, text) that is serialised to SVG and
//! rasterised to PNG from the same list, so both outputs always agree.

use std::fmt::Write as _;

use super::font::SVG_FONT_FAMILY;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Horizontal text anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

/// Marker glyphs; filled shapes so they stay distinct in greyscale print too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Pentagon,
    Hexagon,
}

impl Marker {
    /// Cycle length 7, coprime with the 10-colour palette, so colour/marker pairs repeat only after 70 series.
    pub(crate) const ALL: [Marker; 7] = [
        Marker::Circle,
        Marker::Square,
        Marker::TriangleUp,
        Marker::Diamond,
        Marker::TriangleDown,
        Marker::Pentagon,
        Marker::Hexagon,
    ];

    /// Polygon vertices around (cx, cy) for radius r, or None for the circle.
    pub(crate) fn polygon(self, cx: f32, cy: f32, r: f32) -> Option<Vec<(f32, f32)>> {
        use std::f32::consts::PI;
        // (corners, rotation of the first corner from "up", radius factor to balance visual area)
        let (n, rot, k) = match self {
            Marker::Circle => return None,
            Marker::Square => (4, PI / 4.0, 1.15),
            Marker::TriangleUp => (3, 0.0, 1.35),
            Marker::Diamond => (4, 0.0, 1.3),
            Marker::TriangleDown => (3, PI, 1.35),
            Marker::Pentagon => (5, 0.0, 1.15),
            Marker::Hexagon => (6, 0.0, 1.1),
        };
        Some(
            (0..n)
                .map(|i| {
                    let a = rot + 2.0 * PI * i as f32 / n as f32;
                    (cx + r * k * a.sin(), cy - r * k * a.cos())
                })
                .collect(),
        )
    }
}

/// One drawing primitive in figure units (1 unit = 1 SVG px; the PNG scales it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// Axis-aligned rectangle.
    Rect { x: f32, y: f32, w: f32, h: f32, fill: Option<Rgb>, stroke: Option<(Rgb, f32)> },
    /// Straight segment (frames, ticks, grid).
    Segment { from: (f32, f32), to: (f32, f32), color: Rgb, width: f32 },
    /// A data series line; `class` tags it in the SVG so tools and tests can find it.
    Polyline { points: Vec<(f32, f32)>, color: Rgb, width: f32, dash: Option<(f32, f32)>, class: &'static str },
    /// A filled marker centred on (x, y).
    Marker { x: f32, y: f32, r: f32, shape: Marker, color: Rgb },
    /// Text whose baseline starts/centres/ends at (x, y); `vertical` rotates it -90 degrees about that point.
    Text { x: f32, y: f32, text: String, size: f32, anchor: Anchor, vertical: bool, color: Rgb },
}

/// A complete figure.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Scene {
    pub width: f32,
    pub height: f32,
    pub items: Vec<Item>,
}

/// Escapes `&`, `<`, `>`, `"` and `'` for text and attribute values of SVG and of HTML pages.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Compact number formatting: 2 decimals are plenty at these sizes and keep files small.
fn n(v: f32) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

impl Scene {
    /// Serialises the scene as a standalone SVG document.
    pub(crate) fn to_svg(&self, title: &str) -> String {
        let mut s = String::new();
        // `write!` into a String cannot fail, hence the ignored results below.
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{f}">"#,
            w = n(self.width),
            h = n(self.height),
            f = SVG_FONT_FAMILY.replace('\'', "&apos;"),
        );
        let _ = writeln!(s, "<title>{}</title>", xml_escape(title));
        for item in &self.items {
            match item {
                Item::Rect { x, y, w, h, fill, stroke } => {
                    let fill = fill.map_or("none".to_string(), Rgb::hex);
                    let stroke = stroke
                        .map_or(String::new(), |(c, sw)| format!(r#" stroke="{}" stroke-width="{}""#, c.hex(), n(sw)));
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"{stroke}/>"#,
                        n(*x),
                        n(*y),
                        n(*w),
                        n(*h)
                    );
                }
                Item::Segment { from, to, color, width } => {
                    let _ = writeln!(
                        s,
                        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"/>"#,
                        n(from.0),
                        n(from.1),
                        n(to.0),
                        n(to.1),
                        color.hex(),
                        n(*width)
                    );
                }
                Item::Polyline { points, color, width, dash, class } => {
                    let pts: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", n(*x), n(*y))).collect();
                    let dash = dash.map_or(String::new(), |(a, b)| format!(r#" stroke-dasharray="{},{}""#, n(a), n(b)));
                    let _ = writeln!(
                        s,
                        r#"<polyline class="{class}" points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round" stroke-linecap="round"{dash}/>"#,
                        pts.join(" "),
                        color.hex(),
                        n(*width)
                    );
                }
                Item::Marker { x, y, r, shape, color } => match shape.polygon(*x, *y, *r) {
                    None => {
                        let _ = writeln!(
                            s,
                            r#"<circle cx="{}" cy="{}" r="{}" fill="{}"/>"#,
                            n(*x),
                            n(*y),
                            n(*r),
                            color.hex()
                        );
                    }
                    Some(poly) => {
                        let pts: Vec<String> = poly.iter().map(|(x, y)| format!("{},{}", n(*x), n(*y))).collect();
                        let _ = writeln!(s, r#"<polygon points="{}" fill="{}"/>"#, pts.join(" "), color.hex());
                    }
                },
                Item::Text { x, y, text, size, anchor, vertical, color } => {
                    let anchor = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    let rot = if *vertical {
                        format!(r#" transform="rotate(-90 {} {})""#, n(*x), n(*y))
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        s,
                        r#"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="{}"{rot}>{}</text>"#,
                        n(*x),
                        n(*y),
                        n(*size),
                        color.hex(),
                        xml_escape(text)
                    );
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_escapes_text_and_formats_numbers() {
        let scene = Scene {
            width: 100.0,
            height: 50.0,
            items: vec![Item::Text {
                x: 1.5,
                y: 2.0,
                text: "a<b & \"c\"".into(),
                size: 12.0,
                anchor: Anchor::Middle,
                vertical: true,
                color: Rgb(0, 0, 0),
            }],
        };
        let svg = scene.to_svg("t&t");
        assert!(svg.contains("<title>t&amp;t</title>"));
        assert!(svg.contains(r##"<text x="1.5" y="2" font-size="12" text-anchor="middle" fill="#000000" transform="rotate(-90 1.5 2)">a&lt;b &amp; &quot;c&quot;</text>"##), "{svg}");
    }
}
