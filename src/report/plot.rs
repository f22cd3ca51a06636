//! Paper-style line figures: one panel per value of a dimension, one line per series,
//! a shared legend below. Records become `FigureData` here; layout.rs turns that into a
//! scene, written both as SVG and as PNG.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{key_label, key_of, AxisValue, Filter, Key, KeyOrder, Record};
use super::ReportError;
use crate::stats::summary::INTERVAL_METHOD;

/// What a figure shows and how its axes are titled: shared by [`PlotSpec`] and the `plot` op's
/// parameters, which flatten it (a stage writes these fields directly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FigureAxes {
    /// Figure title above all panels (empty for none).
    #[serde(default)]
    pub title: String,
    /// Dimension giving one panel per value, e.g. `target`; leave it unset for a single panel.
    #[serde(default)]
    pub panel: Option<String>,
    /// Axis on the horizontal axis, e.g. `p`; numeric values are placed numerically, strings as categories.
    pub x: String,
    /// Dimensions naming a line, e.g. `["source", "k"]` -> `N_cf k=250`.
    #[serde(default)]
    pub series: Vec<String>,
    /// Horizontal axis title (empty: the name of `x`).
    #[serde(default)]
    pub x_label: String,
    /// Vertical axis title, shown once left of the first panel (empty: the metric's name).
    #[serde(default)]
    pub y_label: String,
    /// Log-scale x axis (numeric, positive x only), e.g. for sweeps over K.
    #[serde(default)]
    pub x_log: bool,
}

/// What to plot: panels, x axis, series and the metric on y.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotSpec {
    /// Panels, x axis, series and titles.
    #[serde(flatten)]
    pub axes: FigureAxes,
    /// Metric on the vertical axis, e.g. `top1`.
    pub metric: String,
    /// Only records whose dimensions equal these values are plotted.
    #[serde(default)]
    pub filter: Filter,
}

/// How x values map onto the horizontal axis domain.
pub(crate) enum XScale {
    Linear,
    Log,
    /// Categories in display order; a value's position is its index.
    Categorical(Vec<AxisValue>),
}

impl XScale {
    fn pos(&self, v: &AxisValue) -> f64 {
        match self {
            XScale::Linear => v.as_f64().unwrap_or(f64::NAN),
            XScale::Log => v.as_f64().map_or(f64::NAN, f64::log10),
            XScale::Categorical(cats) => cats.iter().position(|c| c == v).unwrap_or(0) as f64,
        }
    }
}

/// One series as seen across the whole figure (for colours and the legend).
pub(crate) struct Series {
    pub label: String,
    pub has_points: bool,
    pub has_baseline: bool,
}

/// One panel's data: per series index, its (x position, y) points and an optional
/// baseline value from records that lack the x axis (drawn as a dashed reference line).
#[derive(Default)]
pub(crate) struct Panel {
    pub title: String,
    pub lines: BTreeMap<usize, Vec<(f64, f64)>>,
    pub baselines: BTreeMap<usize, f64>,
    /// Per series, (x position, y, CI half-width) of points that summarise replicates.
    pub error_bars: BTreeMap<usize, Vec<(f64, f64, f64)>>,
    /// Per series, the CI half-width of its baseline.
    pub baseline_errors: BTreeMap<usize, f64>,
}

pub(crate) struct FigureData {
    pub panels: Vec<Panel>,
    pub series: Vec<Series>,
    pub x_scale: XScale,
    /// Distinct x positions with their labels, in order.
    pub x_values: Vec<(f64, String)>,
    /// The fewest and the most replicates behind a drawn point, when any point has an interval.
    pub interval_ns: Option<(usize, usize)>,
}

/// Largest magnitude a chart places (values, intervals, x): beyond it the axis arithmetic
/// overflows.
const MAX_PLOTTED: f64 = 1e100;

impl FigureData {
    pub(crate) fn build(records: &[Record], spec: &PlotSpec) -> Result<Self, ReportError> {
        let invalid = |reason: String| ReportError::InvalidSpec { title: spec.axes.title.clone(), reason };
        let recs: Vec<&Record> =
            records.iter().filter(|r| r.matches(&spec.filter) && r.metrics.contains_key(&spec.metric)).collect();
        if recs.is_empty() {
            return Err(ReportError::NoData { title: spec.axes.title.clone(), metric: spec.metric.clone() });
        }

        let panel_dims: Vec<String> = spec.axes.panel.iter().cloned().collect();
        let sorted_keys = |dims: &[String]| {
            let mut keys: Vec<Key> = recs.iter().map(|r| key_of(r, dims)).collect();
            KeyOrder::new(dims, recs.iter().copied()).sort(&mut keys);
            keys
        };
        let panel_keys = sorted_keys(&panel_dims);
        let series_keys = sorted_keys(&spec.axes.series);
        let x_dim = [spec.axes.x.clone()];
        let x_keys: Vec<AxisValue> =
            sorted_keys(&x_dim).into_iter().filter_map(|k| k.into_iter().next().flatten()).collect();
        if x_keys.is_empty() {
            return Err(invalid(format!("no record has the x axis {:?}", spec.axes.x)));
        }

        let numeric = x_keys.iter().all(|v| v.as_f64().is_some());
        let x_scale = match (numeric, spec.axes.x_log) {
            (true, true) => {
                if let Some(bad) = x_keys.iter().find(|v| v.as_f64().is_some_and(|f| f <= 0.0)) {
                    return Err(invalid(format!("log x axis needs positive values, got {bad}")));
                }
                XScale::Log
            }
            (true, false) => XScale::Linear,
            (false, true) => return Err(invalid("log x axis needs numeric x values".into())),
            (false, false) => XScale::Categorical(x_keys.clone()),
        };
        if let Some(far) = x_keys.iter().filter_map(AxisValue::as_f64).find(|x| x.abs() > MAX_PLOTTED) {
            return Err(invalid(format!(
                "the x axis {:?} takes {far:e}, beyond ±{MAX_PLOTTED:e}, which a chart cannot place",
                spec.axes.x
            )));
        }
        let x_values = x_keys.iter().map(|v| (x_scale.pos(v), v.to_string())).collect();

        let mut panels: Vec<Panel> =
            panel_keys.iter().map(|k| Panel { title: key_label(&panel_dims, k), ..Panel::default() }).collect();
        let mut series: Vec<Series> = series_keys
            .iter()
            .map(|k| Series { label: key_label(&spec.axes.series, k), has_points: false, has_baseline: false })
            .collect();

        let mut seen: BTreeMap<(usize, usize, Option<AxisValue>), &Record> = BTreeMap::new();
        // Every point's replicates, not only the barred ones: a single run drawn beside means
        // must not be called a mean over n by the caption.
        let mut point_ns: Option<(usize, usize)> = None;
        let mut any_bar = false;
        for r in &recs {
            let pi = panel_keys.iter().position(|k| *k == key_of(r, &panel_dims));
            let si = series_keys.iter().position(|k| *k == key_of(r, &spec.axes.series));
            let (Some(pi), Some(si)) = (pi, si) else {
                continue; // unreachable: the keys were collected from these records
            };
            let x = r.dim(&spec.axes.x);
            if let Some(prev) = seen.insert((pi, si, x.clone()), r) {
                let at = x.map_or("no x value".to_string(), |v| format!("{}={v}", spec.axes.x));
                return Err(ReportError::Duplicate {
                    title: spec.axes.title.clone(),
                    cell: format!("panel {:?}, series {:?}, {at}", panels[pi].title, series[si].label),
                    first: prev.describe(),
                    second: r.describe(),
                });
            }
            let y = r.metrics[&spec.metric];
            if !y.is_finite() {
                // A diverged run (NaN/inf) has no place on the axis; the table still shows it.
                continue;
            }
            let half_width = r.replicates.as_ref().and_then(|s| s.half_width).filter(|h| h.is_finite());
            if y.abs() > MAX_PLOTTED || half_width.is_some_and(|h| h > MAX_PLOTTED) {
                // The axis' span and ticks overflowed: NaN coordinates and an empty image.
                return Err(invalid(format!(
                    "{} of {} is {y:e}{}, beyond ±{MAX_PLOTTED:e}, which a chart cannot place; a table shows it",
                    spec.metric,
                    r.describe(),
                    half_width.map(|h| format!(" ± {h:e}")).unwrap_or_default()
                )));
            }
            let n = r.replicates.as_ref().map_or(1, |s| s.n);
            point_ns = Some(point_ns.map_or((n, n), |(lo, hi)| (lo.min(n), hi.max(n))));
            any_bar |= half_width.is_some();
            match x {
                Some(x) => {
                    panels[pi].lines.entry(si).or_default().push((x_scale.pos(&x), y));
                    if let Some(h) = half_width {
                        panels[pi].error_bars.entry(si).or_default().push((x_scale.pos(&x), y, h));
                    }
                    series[si].has_points = true;
                }
                None => {
                    panels[pi].baselines.insert(si, y);
                    if let Some(h) = half_width {
                        panels[pi].baseline_errors.insert(si, h);
                    }
                    series[si].has_baseline = true;
                }
            }
        }
        for p in &mut panels {
            for pts in p.lines.values_mut() {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        let interval_ns = point_ns.filter(|_| any_bar);
        Ok(FigureData { panels, series, x_scale, x_values, interval_ns })
    }

    /// What the error bars are, for the line under the figure: `None` when none is drawn.
    pub(crate) fn interval_caption(&self) -> Option<[String; 2]> {
        let (lo, hi) = self.interval_ns?;
        let n = match (lo, hi) {
            _ if lo == hi => format!("means over n = {lo} replicates"),
            (1, _) => format!("means over n = 1 to {hi} replicates (no bar: one run)"),
            _ => format!("means over n = {lo} to {hi} replicates"),
        };
        Some([format!("Points: {n};"), format!("bars: 95 % confidence intervals ({INTERVAL_METHOD}).")])
    }
}
