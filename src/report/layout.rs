//! Figure geometry: turns [`FigureData`] into a [`Scene`] that looks like a paper
//! figure (matplotlib-like proportions, ticks outside, light grid, shared legend).

use super::font::text_width;
use super::plot::{FigureData, Panel, PlotSpec, XScale};
use super::scene::{Anchor, Item, Marker, Rgb, Scene};
use super::ticks::{decade_ticks, nice_ticks, padded_range, Ticks};

/// matplotlib's tab10: familiar from papers and distinguishable for common colour-vision deficiencies.
pub(crate) const PALETTE: [Rgb; 10] = [
    Rgb(0x1f, 0x77, 0xb4),
    Rgb(0xff, 0x7f, 0x0e),
    Rgb(0x2c, 0xa0, 0x2c),
    Rgb(0xd6, 0x27, 0x28),
    Rgb(0x94, 0x67, 0xbd),
    Rgb(0x8c, 0x56, 0x4b),
    Rgb(0xe3, 0x77, 0xc2),
    Rgb(0x7f, 0x7f, 0x7f),
    Rgb(0xbc, 0xbd, 0x22),
    Rgb(0x17, 0xbe, 0xcf),
];
const BLACK: Rgb = Rgb(0, 0, 0);
const DARK: Rgb = Rgb(0x22, 0x22, 0x22);
const GRID: Rgb = Rgb(0xe4, 0xe4, 0xe4);
const LEGEND_FRAME: Rgb = Rgb(0xc8, 0xc8, 0xc8);

// Layout in SVG units. A panel's plot area is about a column-width figure at 2x.
const PLOT_W: f32 = 300.0;
const PLOT_H: f32 = 210.0;
const MARGIN: f32 = 12.0;
const PANEL_GAP: f32 = 24.0;
const TICK_LEN: f32 = 4.0;
const TICK_FONT: f32 = 11.0;
const LABEL_FONT: f32 = 12.0;
const PANEL_FONT: f32 = 12.5;
const TITLE_FONT: f32 = 14.0;
const LEGEND_FONT: f32 = 11.0;
const LEGEND_ROW: f32 = 18.0;
const LEGEND_SAMPLE: f32 = 26.0;
const LEGEND_SPACING: f32 = 20.0;
const CAPTION_FONT: f32 = 10.0;
const LINE_W: f32 = 1.8;
const MARKER_R: f32 = 3.3;
/// Half-width of the caps on replicate error bars.
const ERROR_CAP: f32 = 3.0;
/// DejaVu's cap height and descent (em): used to place text by its visible extent.
const CAP: f32 = 0.73;
const DESCENT: f32 = 0.24;
/// Dash pattern of reference lines (records without an x value).
const DASH: (f32, f32) = (6.0, 4.0);

/// Whether tick labels centred at `px` are at least a small gap apart.
fn labels_fit(px: &[f32], labels: &[String]) -> bool {
    px.windows(2).zip(labels.windows(2)).all(|(p, l)| {
        let need = (text_width(&l[0], TICK_FONT) + text_width(&l[1], TICK_FONT)) / 2.0 + 6.0;
        p[1] - p[0] >= need
    })
}

/// Picks x ticks: the swept values themselves when they fit (sweep figures read best
/// that way), else nice/decade ticks, else every n-th value.
fn x_ticks(data: &FigureData, lo: f64, hi: f64) -> Ticks {
    let to_px = |v: f64| ((v - lo) / (hi - lo)) as f32 * PLOT_W;
    let fits = |t: &Ticks| {
        let px: Vec<f32> = t.pos.iter().map(|&v| to_px(v)).collect();
        labels_fit(&px, &t.labels)
    };
    let values = Ticks {
        pos: data.x_values.iter().map(|v| v.0).collect(),
        labels: data.x_values.iter().map(|v| v.1.clone()).collect(),
    };
    if values.pos.len() <= 12 && fits(&values) {
        return values;
    }
    let fallback = match data.x_scale {
        XScale::Linear => Some(nice_ticks(lo, hi, 5)),
        XScale::Log => Some(decade_ticks(lo, hi)).filter(|t| t.pos.len() >= 2),
        XScale::Categorical(_) => None,
    };
    if let Some(t) = fallback {
        return t;
    }
    (2..values.pos.len().max(2))
        .map(|step| Ticks {
            pos: values.pos.iter().copied().step_by(step).collect(),
            labels: values.labels.iter().cloned().step_by(step).collect(),
        })
        .find(|t| fits(t))
        .unwrap_or(values)
}

fn text(x: f32, y: f32, s: &str, size: f32, anchor: Anchor, color: Rgb) -> Item {
    Item::Text { x, y, text: s.to_string(), size, anchor, vertical: false, color }
}

fn segment(from: (f32, f32), to: (f32, f32), color: Rgb, width: f32) -> Item {
    Item::Segment { from, to, color, width }
}

/// Per-panel y axis: padded data range and its ticks.
fn y_axis(p: &Panel) -> (f64, f64, Ticks) {
    let bars = p.error_bars.values().flatten().flat_map(|&(_, y, h)| [y - h, y + h]);
    let bands = p.baseline_errors.iter().filter_map(|(si, h)| p.baselines.get(si).map(|y| [y - h, y + h])).flatten();
    let ys = p
        .lines
        .values()
        .flatten()
        .map(|pt| pt.1)
        .chain(p.baselines.values().copied())
        .chain(bars)
        .chain(bands)
        .filter(|y| y.is_finite());
    let (min, max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if min.is_finite() {
        padded_range(min, max, 0.08)
    } else {
        (0.0, 1.0) // a panel with only non-finite values still gets a frame
    };
    (lo, hi, nice_ticks(lo, hi, 5))
}

/// Legend grid: the most columns (each as wide as its widest entry) that fit in
/// `avail`, filled row by row like matplotlib's `ncol`; returns widths and total width.
fn legend_columns(entry_w: &[f32], avail: f32) -> (Vec<f32>, f32) {
    let mut best = (vec![entry_w.iter().copied().fold(0.0, f32::max)], 0.0);
    for ncol in (1..=entry_w.len()).rev() {
        let mut cols = vec![0.0f32; ncol];
        for (i, &w) in entry_w.iter().enumerate() {
            cols[i % ncol] = cols[i % ncol].max(w);
        }
        let total = cols.iter().sum::<f32>() + LEGEND_SPACING * (ncol - 1) as f32;
        if total <= avail || ncol == 1 {
            best = (cols, total);
            break;
        }
    }
    best
}

/// Vertical positions and the x axis, shared by all panels.
struct Frame {
    x_lo: f64,
    x_hi: f64,
    x_ticks: Ticks,
    top: f32,
    bottom: f32,
    tick_baseline: f32,
    xlabel_baseline: f32,
}

/// Computes the whole figure geometry into a scene.
pub(crate) fn layout(data: &FigureData, spec: &PlotSpec) -> Scene {
    let mut items = Vec::new();
    let y_axes: Vec<(f64, f64, Ticks)> = data.panels.iter().map(y_axis).collect();
    let (x_lo, x_hi) = match &data.x_scale {
        XScale::Categorical(c) => (-0.5, c.len() as f64 - 0.5),
        _ => {
            let first = data.x_values.first().map_or(0.0, |v| v.0);
            let last = data.x_values.last().map_or(1.0, |v| v.0);
            padded_range(first, last, 0.05)
        }
    };
    let x_ticks = x_ticks(data, x_lo, x_hi);

    // Horizontal: [y label] then per panel [tick-label gutter | plot area], gaps between.
    // One gutter for all panels keeps the plot areas evenly spaced.
    let gutter =
        y_axes.iter().flat_map(|(_, _, t)| t.labels.iter()).map(|l| text_width(l, TICK_FONT)).fold(0.0, f32::max)
            + TICK_LEN
            + 4.0;
    let ylabel_w = if spec.axes.y_label.is_empty() { 0.0 } else { LABEL_FONT + 6.0 };
    let n = data.panels.len() as f32;
    let overhang = x_ticks.labels.last().map_or(0.0, |l| text_width(l, TICK_FONT) / 2.0);
    let panels_w = ylabel_w + n * (gutter + PLOT_W) + (n - 1.0) * PANEL_GAP + overhang;

    // The legend is one shared block below all panels: colours are consistent across
    // panels, so repeating it per panel would only cost plot area. A single unnamed
    // series needs none.
    let legend = (!spec.axes.series.is_empty() && !data.series.is_empty()).then(|| {
        let entry_w: Vec<f32> =
            data.series.iter().map(|s| LEGEND_SAMPLE + 6.0 + text_width(&s.label, LEGEND_FONT)).collect();
        legend_columns(&entry_w, panels_w - 16.0)
    });
    let legend_w = legend.as_ref().map_or(0.0, |(_, w)| w + 16.0);
    // What the error bars are, under everything: on one line where it fits, else on two.
    let caption: Vec<String> = data.interval_caption().map_or_else(Vec::new, |parts| {
        let line = parts.join(" ");
        match text_width(&line, CAPTION_FONT) <= panels_w.max(legend_w) {
            true => vec![line],
            false => parts.to_vec(),
        }
    });
    let caption_w = caption.iter().map(|l| text_width(l, CAPTION_FONT)).fold(0.0, f32::max);
    let width = panels_w.max(legend_w).max(caption_w) + 2.0 * MARGIN;
    // Centre the panels when a wide legend made the figure wider than they are.
    let x0 = MARGIN + (width - 2.0 * MARGIN - panels_w) / 2.0;

    // Vertical: title, panel titles, plot areas, tick labels, x label, legend.
    let title_baseline = MARGIN + CAP * TITLE_FONT;
    let mut y = MARGIN;
    if !spec.axes.title.is_empty() {
        y = title_baseline + DESCENT * TITLE_FONT + 8.0;
        items.push(text(width / 2.0, title_baseline, &spec.axes.title, TITLE_FONT, Anchor::Middle, BLACK));
    }
    if spec.axes.panel.is_some() {
        y += PANEL_FONT * (CAP + DESCENT) + 6.0;
    }
    let top = y.round();
    let bottom = top + PLOT_H;
    let tick_baseline = bottom + TICK_LEN + 3.0 + CAP * TICK_FONT;
    let frame = Frame {
        x_lo,
        x_hi,
        x_ticks,
        top,
        bottom,
        tick_baseline,
        xlabel_baseline: tick_baseline + DESCENT * TICK_FONT + 6.0 + CAP * LABEL_FONT,
    };
    let mut height = frame.xlabel_baseline + DESCENT * LABEL_FONT + MARGIN;

    if !spec.axes.y_label.is_empty() {
        items.push(Item::Text {
            x: x0 + CAP * LABEL_FONT,
            y: top + PLOT_H / 2.0,
            text: spec.axes.y_label.clone(),
            size: LABEL_FONT,
            anchor: Anchor::Middle,
            vertical: true,
            color: BLACK,
        });
    }
    for (i, (panel, y_axis)) in data.panels.iter().zip(&y_axes).enumerate() {
        // Whole-unit plot edges keep the 1-unit frame crisp (2 device px at 2x).
        let left = (x0 + ylabel_w + gutter + i as f32 * (PLOT_W + PANEL_GAP + gutter)).round();
        draw_panel(&mut items, panel, y_axis, left, &frame, spec);
    }
    if let Some((col_w, block_w)) = legend {
        let legend_top = height - MARGIN + 8.0;
        height = legend_top + draw_legend(&mut items, data, &col_w, block_w, legend_top, width) + MARGIN;
    }
    for line in &caption {
        let baseline = height - MARGIN + 6.0 + CAP * CAPTION_FONT;
        items.push(text(width / 2.0, baseline, line, CAPTION_FONT, Anchor::Middle, DARK));
        height = baseline + DESCENT * CAPTION_FONT + MARGIN;
    }
    Scene { width: width.ceil(), height: height.ceil(), items }
}

/// Draws one panel: title, grid, data, frame, ticks and x label.
fn draw_panel(
    items: &mut Vec<Item>,
    panel: &Panel,
    (y_lo, y_hi, yt): &(f64, f64, Ticks),
    left: f32,
    f: &Frame,
    spec: &PlotSpec,
) {
    let px = |x: f64| left + ((x - f.x_lo) / (f.x_hi - f.x_lo)) as f32 * PLOT_W;
    let py = |v: f64| f.bottom - ((v - y_lo) / (y_hi - y_lo)) as f32 * PLOT_H;
    let (right, centre) = (left + PLOT_W, left + PLOT_W / 2.0);

    if spec.axes.panel.is_some() {
        let baseline = f.top - 6.0 - DESCENT * PANEL_FONT;
        items.push(text(centre, baseline, &panel.title, PANEL_FONT, Anchor::Middle, BLACK));
    }
    // Grid first so data and frame draw over it.
    for &v in &yt.pos {
        items.push(segment((left, py(v)), (right, py(v)), GRID, 0.8));
    }
    for &v in &f.x_ticks.pos {
        items.push(segment((px(v), f.top), (px(v), f.bottom), GRID, 0.8));
    }
    for (&si, &v) in &panel.baselines {
        items.push(Item::Polyline {
            points: vec![(left, py(v)), (right, py(v))],
            color: PALETTE[si % PALETTE.len()],
            width: LINE_W * 0.8,
            dash: Some(DASH),
            class: "series",
        });
    }
    // Replicate intervals: a bar with caps at each point, thin dashed bounds around a baseline.
    for (&si, &h) in &panel.baseline_errors {
        let Some(&v) = panel.baselines.get(&si) else { continue };
        for y in [v - h, v + h] {
            items.push(Item::Polyline {
                points: vec![(left, py(y)), (right, py(y))],
                color: PALETTE[si % PALETTE.len()],
                width: 0.6,
                dash: Some((2.0, 3.0)),
                class: "interval",
            });
        }
    }
    for (&si, bars) in &panel.error_bars {
        let color = PALETTE[si % PALETTE.len()];
        for &(x, y, h) in bars {
            let (x, lo, hi) = (px(x), py(y - h), py(y + h));
            for points in [
                vec![(x, lo), (x, hi)],
                vec![(x - ERROR_CAP, lo), (x + ERROR_CAP, lo)],
                vec![(x - ERROR_CAP, hi), (x + ERROR_CAP, hi)],
            ] {
                items.push(Item::Polyline { points, color, width: 1.0, dash: None, class: "error-bar" });
            }
        }
    }
    for (&si, pts) in &panel.lines {
        let color = PALETTE[si % PALETTE.len()];
        let points: Vec<(f32, f32)> = pts.iter().map(|&(x, y)| (px(x), py(y))).collect();
        // Line under its markers, each series kept together in the SVG.
        items.push(Item::Polyline { points: points.clone(), color, width: LINE_W, dash: None, class: "series" });
        for (x, y) in points {
            items.push(Item::Marker { x, y, r: MARKER_R, shape: Marker::ALL[si % Marker::ALL.len()], color });
        }
    }
    items.push(Item::Rect { x: left, y: f.top, w: PLOT_W, h: PLOT_H, fill: None, stroke: Some((BLACK, 1.0)) });
    for (&v, l) in yt.pos.iter().zip(&yt.labels) {
        items.push(segment((left - TICK_LEN, py(v)), (left, py(v)), BLACK, 1.0));
        // Centre the digits' cap height on the tick.
        let baseline = py(v) + CAP * TICK_FONT / 2.0;
        items.push(text(left - TICK_LEN - 3.0, baseline, l, TICK_FONT, Anchor::End, DARK));
    }
    for (&v, l) in f.x_ticks.pos.iter().zip(&f.x_ticks.labels) {
        items.push(segment((px(v), f.bottom), (px(v), f.bottom + TICK_LEN), BLACK, 1.0));
        items.push(text(px(v), f.tick_baseline, l, TICK_FONT, Anchor::Middle, DARK));
    }
    if !spec.axes.x_label.is_empty() {
        items.push(text(centre, f.xlabel_baseline, &spec.axes.x_label, LABEL_FONT, Anchor::Middle, BLACK));
    }
}

/// Draws the framed legend grid centred at `top`; returns its height.
fn draw_legend(items: &mut Vec<Item>, data: &FigureData, col_w: &[f32], block_w: f32, top: f32, width: f32) -> f32 {
    let ncol = col_w.len();
    let nrow = data.series.len().div_ceil(ncol);
    let x0 = ((width - block_w) / 2.0).round();
    let frame_h = nrow as f32 * LEGEND_ROW + 8.0;
    items.push(Item::Rect {
        x: x0 - 8.0,
        y: top,
        w: block_w + 16.0,
        h: frame_h,
        fill: None,
        stroke: Some((LEGEND_FRAME, 0.8)),
    });
    for (i, s) in data.series.iter().enumerate() {
        let (row, col) = (i / ncol, i % ncol);
        let ex = x0 + col_w[..col].iter().map(|w| w + LEGEND_SPACING).sum::<f32>();
        let cy = top + 4.0 + LEGEND_ROW * (row as f32 + 0.5);
        let color = PALETTE[i % PALETTE.len()];
        // Dashed sample for series that only ever appear as a reference line.
        let dashed = s.has_baseline && !s.has_points;
        items.push(Item::Polyline {
            points: vec![(ex, cy), (ex + LEGEND_SAMPLE, cy)],
            color,
            width: LINE_W,
            dash: dashed.then_some(DASH),
            class: "legend",
        });
        if s.has_points {
            items.push(Item::Marker {
                x: ex + LEGEND_SAMPLE / 2.0,
                y: cy,
                r: MARKER_R,
                shape: Marker::ALL[i % Marker::ALL.len()],
                color,
            });
        }
        let baseline = cy + CAP * LEGEND_FONT / 2.0;
        items.push(text(ex + LEGEND_SAMPLE + 6.0, baseline, &s.label, LEGEND_FONT, Anchor::Start, BLACK));
    }
    frame_h
}
