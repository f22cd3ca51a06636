//! Small inline SVG line charts (training curves): one line per series, 1-2-5 ticks, a legend.

use std::fmt::Write as _;

use super::encode::escape;
use crate::report::number;

/// Colours of successive series (colour-blind friendly, after Okabe and Ito).
const COLORS: &[&str] = &["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
/// Line patterns for the series past each round of [`COLORS`] (solid, dashed, dotted,
/// dash-dot), so that series 0 and 8 no longer read alike; with the swatch the legend draws of
/// each (a gradient of the same lengths).
const DASHES: &[(&str, &str)] = &[
    ("", ""),
    ("6 3", "6px, transparent 6px 9px"),
    ("1.6 2.4", "2px, transparent 2px 5px"),
    ("7 3 1.6 3", "7px, transparent 7px 10px, COLOR 10px 12px, transparent 12px 15px"),
];

/// The color and line pattern (an SVG dash array, and the legend's CSS background) of series `i`.
fn style(i: usize) -> (&'static str, &'static str, String) {
    let color = COLORS[i % COLORS.len()];
    let (dash, swatch) = DASHES[(i / COLORS.len()) % DASHES.len()];
    let background = if swatch.is_empty() {
        color.to_string()
    } else {
        format!("repeating-linear-gradient(90deg, {color} 0 {})", swatch.replace("COLOR", color))
    };
    (color, dash, background)
}

/// Most points a line is drawn with: two per pixel column of the plot, which is 356 px wide. A
/// million-point curve made a 253 MB page that no browser drew (found by a review).
const POINTS_DRAWN: usize = 712;
/// A line of at most this many points gets a dot at each one; past it the dots hide the line.
const DOTS_UP_TO: usize = 100;

/// One line: a label and its points, made by [`Series::new`].
pub struct Series {
    /// Legend text.
    label: String,
    /// Finite `(x, y)` points in x order, at most [`POINTS_DRAWN`].
    points: Vec<(f64, f64)>,
    /// Points left out of `points` for not being finite (counted on the chart).
    unseen: usize,
}

impl Series {
    /// The finite ones of `points` (in x order), thinned to at most [`POINTS_DRAWN`]: of each of
    /// `POINTS_DRAWN / 2` equal runs of them, the lowest and the highest, in x order, so a spike
    /// still shows.
    pub fn new(label: String, points: impl IntoIterator<Item = (f64, f64)>) -> Series {
        let all: Vec<(f64, f64)> = points.into_iter().collect();
        let finite: Vec<(f64, f64)> = all.iter().copied().filter(|(a, b)| a.is_finite() && b.is_finite()).collect();
        let unseen = all.len() - finite.len();
        if finite.len() <= POINTS_DRAWN {
            return Series { label, points: finite, unseen };
        }
        let runs = POINTS_DRAWN / 2;
        let mut points = Vec::with_capacity(POINTS_DRAWN);
        for r in 0..runs {
            let run = &finite[r * finite.len() / runs..(r + 1) * finite.len() / runs];
            let by_y = |a: &(usize, &(f64, f64)), b: &(usize, &(f64, f64))| a.1 .1.total_cmp(&b.1 .1);
            let lo = run.iter().enumerate().min_by(by_y).map_or(0, |(i, _)| i);
            let hi = run.iter().enumerate().max_by(by_y).map_or(0, |(i, _)| i);
            points.push(run[lo.min(hi)]);
            if lo != hi {
                points.push(run[lo.max(hi)]);
            }
        }
        Series { label, points, unseen }
    }
}

/// Ticks on a 1-2-5 step over `[lo, hi]`, about `target` of them, and the step.
fn ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let span = (hi - lo).max(f64::EPSILON);
    let raw = span / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let mut out = Vec::new();
    for k in first.. {
        let t = k as f64 * step;
        if t > hi + step * 1e-9 || out.len() >= 50 {
            break;
        }
        out.push(t);
    }
    (out, step)
}

/// A tick's text, with as many digits as ticks `step` apart need to differ: plain for everyday
/// magnitudes, `1.5e9` for huge or tiny ones (a curve's values come from a command's metrics,
/// which may hold anything finite).
fn label(v: f64, step: f64) -> String {
    let a = v.abs();
    if a < step * 1e-6 {
        return "0".into();
    }
    let step_mag = step.abs().log10().floor();
    if !(1e-4..1e6).contains(&a) {
        return number::exponent(v, (a.log10().floor() - step_mag).clamp(0.0, 15.0) as usize);
    }
    let decimals = (-step_mag).clamp(0.0, 15.0) as usize;
    number::trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// The ticks whose labels differ from the one before: steps finer than a float's precision at
/// their magnitude (x from 1e17 to 1e17 + 16) would print one label several times.
fn distinct_labels(ticks: Vec<f64>, step: f64) -> Vec<f64> {
    let mut last = None;
    ticks
        .into_iter()
        .filter(|&t| {
            let text = label(t, step);
            let new = last.as_ref() != Some(&text);
            last = Some(text);
            new
        })
        .collect()
}

/// An SVG chart of `series` titled `title`, with `x` and `y` axis names.
pub fn line_chart(title: &str, x: &str, y: &str, series: &[Series]) -> String {
    let (w, h) = (420.0, 260.0);
    let (left, right, top, bottom) = (52.0, 12.0, 28.0, 40.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(a, b) in pts {
        x0 = x0.min(a);
        x1 = x1.max(a);
        y0 = y0.min(b);
        y1 = y1.max(b);
    }
    // Nothing to draw, or a range no f64 can span (a curve of ±1e308): every coordinate would be
    // NaN and the browser would draw nothing anyway, with a console error for each point.
    if x0 > x1 || !(x1 - x0).is_finite() || !((y1 - y0) * 1.1).is_finite() {
        return String::new();
    }
    if x1 - x0 < 1e-12 {
        // One x (a single epoch): a unit of width, or more where a unit is below the float's
        // precision at that magnitude.
        x1 = x0 + (x0.abs() * 1e-9).max(1.0);
    }
    // A flat series still gets a readable range around its value.
    let pad = ((y1 - y0) * 0.05).max(y0.abs().max(y1.abs()) * 1e-3).max(1e-6);
    y0 -= pad;
    y1 += pad;
    // Values within the padding of the largest float (a sentinel such as `sys.float_info.max`).
    if !(y1 - y0).is_finite() {
        return String::new();
    }
    let px = |v: f64| left + (v - x0) / (x1 - x0) * (w - left - right);
    let py = |v: f64| top + (1.0 - (v - y0) / (y1 - y0)) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(title)
    );
    let _ = write!(s, "<text x=\"{}\" y=\"16\" class=\"ct\">{}</text>", w / 2.0, escape(title));
    let (y_ticks, y_step) = ticks(y0, y1, 5);
    for t in distinct_labels(y_ticks, y_step) {
        let yy = py(t);
        let _ = write!(s, "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/>", w - right);
        let _ = write!(s, "<text x=\"{}\" y=\"{:.1}\" class=\"yl\">{}</text>", left - 4.0, yy + 4.0, label(t, y_step));
    }
    // Epochs are whole numbers: no tick between two of them.
    let whole = series.iter().flat_map(|s| s.points.iter()).all(|(a, _)| a.fract() == 0.0);
    let (x_ticks, x_step) = ticks(x0, x1, 6);
    for t in distinct_labels(x_ticks, x_step).into_iter().filter(|t| !whole || (t - t.round()).abs() < 1e-9) {
        let xx = px(t);
        let _ = write!(s, "<text x=\"{xx:.1}\" y=\"{}\" class=\"xl\">{}</text>", h - bottom + 14.0, label(t, x_step));
    }
    // Points that are not finite (a value that overflowed when scaled) are not drawn: said.
    let unseen = series.iter().map(|s| s.unseen).sum::<usize>();
    if unseen > 0 {
        let plural = if unseen == 1 { "point" } else { "points" };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" class=\"yl\">{unseen} {plural} not finite, not drawn</text>",
            w - right - 4.0,
            top + 12.0
        );
    }
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" class=\"frame\"/>",
        w - left - right,
        h - top - bottom
    );
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" class=\"xn\">{}</text>", (left + w - right) / 2.0, h - 6.0, escape(x));
    let _ = write!(
        s,
        "<text transform=\"translate(12 {}) rotate(-90)\" class=\"xn\">{}</text>",
        (top + h - bottom) / 2.0,
        escape(y)
    );
    for (i, ser) in series.iter().enumerate() {
        let (color, dash, _) = style(i);
        let dashed = if dash.is_empty() { String::new() } else { format!(" stroke-dasharray=\"{dash}\"") };
        let path: Vec<String> = ser.points.iter().map(|&(a, b)| format!("{:.1},{:.1}", px(a), py(b))).collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dashed}>",
            path.join(" ")
        );
        let _ = write!(s, "<title>{}</title></polyline>", escape(&ser.label));
        for p in path.iter().filter(|_| path.len() <= DOTS_UP_TO) {
            let (a, b) = p.split_once(',').expect("x,y");
            let _ = write!(s, "<circle cx=\"{a}\" cy=\"{b}\" r=\"2\" fill=\"{color}\"/>");
        }
    }
    s.push_str("</svg>");
    s
}

/// The legend shared by the charts of one stage, as HTML (it wraps, unlike SVG text).
pub fn legend(labels: &[String]) -> String {
    let items: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| format!("<span><i style=\"background:{}\"></i>{}</span>", style(i).2, escape(l)))
        .collect();
    format!("<div class=\"legend\">{}</div>", items.join(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_no_float_spans_draws_no_chart_instead_of_nan() {
        let wide = Series::new("x".into(), vec![(0.0, -1e308), (1.0, 1e308)]);
        assert_eq!(line_chart("t", "x", "y", &[wide]), "");
        let fine = Series::new("x".into(), vec![(0.0, -1e300), (1.0, 1e300), (2.0, f64::NAN)]);
        let svg = line_chart("t", "x", "y", &[fine]);
        assert!(!svg.is_empty() && !svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    /// Past the eight colors, series take a line pattern too: 0 and 8 shared one look, legend
    /// and all (found by an audit of a stage of ten instances).
    #[test]
    fn series_past_the_palette_differ_by_their_line() {
        let looks: std::collections::BTreeSet<(&str, &str)> =
            (0..COLORS.len() * DASHES.len()).map(|i| (style(i).0, style(i).1)).collect();
        assert_eq!(looks.len(), COLORS.len() * DASHES.len());
        let series: Vec<Series> =
            (0..10).map(|i| Series::new(format!("s{i}"), vec![(0.0, i as f64), (1.0, 1.0)])).collect();
        let svg = line_chart("t", "x", "y", &series);
        assert_eq!(svg.matches("stroke-dasharray=\"6 3\"").count(), 2, "{svg}");
        let html = legend(&series.iter().map(|s| s.label.clone()).collect::<Vec<_>>());
        assert!(html.contains("repeating-linear-gradient(90deg, #0072B2 0 6px"), "{html}");
    }

    /// A million-point curve is drawn with at most [`POINTS_DRAWN`] points and no dots, keeping
    /// its spike and its ends, and counting its points that are not finite (a page of two such
    /// curves was 253 MB, found by a review).
    #[test]
    fn a_long_curve_is_thinned_to_what_the_chart_can_show() {
        let n = 1_000_000;
        let points = (0..n).map(|i| {
            (
                i as f64,
                if i == 123_457 {
                    9.0
                } else if i == 5 {
                    f64::NAN
                } else {
                    1.0
                },
            )
        });
        let series = Series::new("long".into(), points);
        assert!(series.points.len() <= POINTS_DRAWN, "{}", series.points.len());
        assert_eq!(series.unseen, 1);
        assert!(series.points.contains(&(123_457.0, 9.0)));
        assert!(series.points.windows(2).all(|w| w[0].0 < w[1].0), "in x order");
        assert_eq!((series.points[0].0, series.points.last().unwrap().0), (0.0, (n - 1) as f64));
        let svg = line_chart("t", "epoch", "loss", &[series]);
        assert!(svg.len() < 20_000 && !svg.contains("<circle"), "{}", svg.len());
        assert!(svg.contains("1 point not finite, not drawn"));
        let short = Series::new("short".into(), (0..10).map(|i| (i as f64, 1.0)));
        assert_eq!(line_chart("t", "epoch", "loss", &[short]).matches("<circle").count(), 10);
    }

    #[test]
    fn ticks_follow_one_two_five_steps() {
        assert_eq!(ticks(0.0, 1.0, 5).0.len(), 6);
        assert_eq!(ticks(1.0, 2.0, 6).0.last().map(|t| t.round()), Some(2.0));
        assert_eq!(label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(label(-1e-17, 0.2), "0");
        let svg = line_chart("loss", "epoch", "loss", &[Series::new("a<b".into(), vec![(1.0, 2.0), (2.0, 1.0)])]);
        assert!(svg.contains("<polyline") && svg.contains("a&lt;b"));
    }

    /// Huge values read as `1e300`, not 300 digits; a flat series gets ticks that differ; a
    /// point that is not finite is counted on the chart, not dropped without a word.
    #[test]
    fn extreme_and_flat_curves_keep_readable_distinct_ticks() {
        let texts = |svg: &str, class: &str| -> Vec<String> {
            svg.split(&format!("class=\"{class}\">"))
                .skip(1)
                .map(|t| t.split('<').next().unwrap().to_string())
                .collect()
        };
        let huge = Series::new("x".into(), vec![(0.0, 0.0), (1e300, 1.0), (2e300, f64::INFINITY)]);
        let svg = line_chart("t", "epoch", "y", &[huge]);
        let xs = texts(&svg, "xl");
        assert!(xs.iter().all(|t| t.len() < 12), "{xs:?}");
        assert!(xs.contains(&"1e300".to_string()), "{xs:?}");
        assert!(svg.contains("1 point not finite, not drawn"), "{svg}");
        for flat in [50.0, 0.0, 1e7] {
            let series = Series::new("x".into(), vec![(0.0, flat), (1.0, flat)]);
            let ys = texts(&line_chart("t", "epoch", "y", &[series]), "yl");
            let distinct: std::collections::BTreeSet<&String> = ys.iter().collect();
            assert!(ys.len() >= 2 && distinct.len() == ys.len(), "flat at {flat}: {ys:?}");
        }
        let one_huge_x = Series::new("x".into(), vec![(1e17, 0.5)]);
        let svg = line_chart("t", "epoch", "y", &[one_huge_x]);
        assert!(!svg.is_empty() && !svg.contains("NaN"), "{svg}");
        let near_max = Series::new("x".into(), vec![(0.0, f64::MAX), (1.0, f64::MAX)]);
        assert_eq!(line_chart("t", "epoch", "y", &[near_max]), "");
        let fine_x = Series::new("x".into(), vec![(1e17, 0.0), (1e17 + 16.0, 1.0)]);
        let xs = texts(&line_chart("t", "epoch", "y", &[fine_x]), "xl");
        let distinct: std::collections::BTreeSet<&String> = xs.iter().collect();
        assert_eq!(distinct.len(), xs.len(), "{xs:?}");
        assert_eq!(label(1.0005e7, 5e3), "1.0005e7");
        assert_eq!(label(2.5e-5, 5e-6), "2.5e-5");
        assert_eq!(label(48.5, 0.5), "48.5");
    }
}
