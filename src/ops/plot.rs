//! `plot`: gathers metrics like `table` and draws a paper-style line chart (SVG and PNG): one
//! panel per value of a dimension, x from a sweep axis, one line per series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gathered::{
    check_cells, check_dimensions, check_display_texts, check_labels, check_metrics, coordinate_text, gather_records,
};
use super::{Gathered, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use serde_json::Value as Json;

use crate::config::params::{self, ParamError, Params};
use crate::report::{self, FigureAxes, PlotSpec};

/// The most panels a figure draws: they stand in one row, and each costs some 3 MB of raster
/// (400 panels took 1.4 GB and made a PNG 285,000 pixels wide).
const MAX_PANELS: usize = 48;
/// The most series one figure tells apart (by colour and marker, listed in its legend).
const MAX_SERIES: usize = 64;

/// The distinct combinations of `dims` among the gathered instances, as the figure draws them:
/// `source` by its label, numbers by value.
fn distinct(dims: &[String], labels: &BTreeMap<String, String>, gathered: &[Gathered<'_>]) -> usize {
    let of = |g: &Gathered<'_>| -> Vec<String> {
        dims.iter()
            .map(|d| match d.as_str() {
                "source" => labels.get(g.stage).map_or(g.stage, String::as_str).to_string(),
                _ => g.axes.get(d).map_or(String::new(), coordinate_text),
            })
            .collect()
    };
    gathered.iter().map(of).collect::<std::collections::BTreeSet<_>>().len()
}

/// Parameters of `plot`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlotParams {
    /// Panels, x axis, series and titles (empty axis titles default to `x` and `metric`).
    #[serde(flatten)]
    pub axes: FigureAxes,
    /// Metric on the vertical axis.
    pub metric: String,
    /// Display names of source stages.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Params for PlotParams {
    fn fields() -> Vec<&'static str> {
        params::with_groups(&[params::field_names::<FigureAxes>()], &["metric", "labels"])
    }

    fn check_groups(raw: &Json) -> Result<(), ParamError> {
        params::check_group::<FigureAxes>(raw)
    }

    fn validate(&self) -> Result<(), ParamError> {
        if self.axes.x.is_empty() {
            return Err(ParamError::field("x", "`x` must name a sweep axis", None));
        }
        if self.metric.is_empty() {
            return Err(ParamError::field("metric", "`metric` must name a metric, e.g. \"top1\"", None));
        }
        let a = &self.axes;
        check_display_texts(&[("title", &a.title), ("x_label", &a.x_label), ("y_label", &a.y_label)], &self.labels)
    }
}

/// A log x axis needs a positive number at every point: known from the sweep before anything runs.
fn check_log_axis(x: &str, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    match gathered.iter().filter_map(|g| g.axes.get(x)).find(|v| !v.as_f64().is_some_and(|f| f > 0.0)) {
        None => Ok(()),
        Some(v) => Err(ParamError::field(
            "x_log",
            format!("x_log = true, but the x axis `{x}` takes the value {v}"),
            Some("a log axis needs positive numbers; drop x_log or the value from the sweep".into()),
        )),
    }
}

/// The `plot` op.
pub struct Plot;

impl StageKind for Plot {
    type Params = PlotParams;
    const JOB: super::JobShape = super::JobShape::IN_DRIVER;
    const LABELLING: &'static [&'static str] = &["title", "x_label", "y_label", "labels"];
    const SPEC: &'static OpSpec = &OpSpec {
        name: "plot",
        // 2: Student t error bars at every n (the normal quantile from n = 30 before).
        // 3: a line under the figure says what the error bars are (95 % CI, n).
        // 4: that line counts every point's replicates, a single run beside means included.
        // 5: means measured from the first replicate (2542e63, replaced by 6).
        // 6: equal replicates are their own mean (`stats::Summary`), as table v6; other means
        //    have the bits of v4's again.
        // 7: tick labels from 1e15 on take an exponent; values beyond ±1e100 fail (they drew NaN
        //    coordinates and an empty image); replicates beyond 2^500 or below 2^-500 are
        //    summarised after an exact scaling; a gathered stage without a point fails.
        version: 7,
        summary: "gathers metrics over sweep instances into a paper-style line chart (SVG and PNG)",
        inputs: &[super::GATHER_METRICS],
        outputs: &[OutputSpec { name: "report", kind: Kind::Report, doc: "figure.svg and figure.png" }],
        metrics: &[],
    };

    fn check_gathered(&self, p: &PlotParams, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
        let (x, panel) = (std::slice::from_ref(&p.axes.x), p.axes.panel.as_slice());
        check_dimensions(&[("x", x), ("panel", panel), ("series", &p.axes.series)], gathered)?;
        check_labels(&p.labels, gathered)?;
        let metric = std::slice::from_ref(&p.metric);
        check_metrics("metric", metric, gathered)?;
        let dims: Vec<String> = p.axes.panel.iter().chain([&p.axes.x]).chain(&p.axes.series).cloned().collect();
        check_cells("series", "point", &dims, None, metric, &p.labels, gathered)?;
        if p.axes.x_log {
            check_log_axis(&p.axes.x, gathered)?;
        }
        let series = p.axes.series.as_slice();
        for (field, what, dims, most) in
            [("panel", "panels", panel, MAX_PANELS), ("series", "series", series, MAX_SERIES)]
        {
            let count = distinct(dims, &p.labels, gathered);
            if count > most {
                return Err(ParamError::field(
                    field,
                    format!("`{field}` makes {count} {what} here; a figure draws at most {most}"),
                    Some("split the sweep over several plot stages, each gathering part of it".into()),
                ));
            }
        }
        Ok(())
    }

    fn run(&self, p: PlotParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let records = gather_records(ctx.gathered("inputs"), std::slice::from_ref(&p.metric), &p.labels)?;
        let dims: Vec<String> = p.axes.panel.iter().chain([&p.axes.x]).chain(&p.axes.series).cloned().collect();
        let records = report::aggregate_replicates(records, "value", &dims, &p.axes.title)?;
        let a = &p.axes;
        let axes = FigureAxes {
            x_label: if a.x_label.is_empty() { a.x.clone() } else { a.x_label.clone() },
            y_label: if a.y_label.is_empty() { p.metric.clone() } else { a.y_label.clone() },
            ..a.clone()
        };
        let spec = PlotSpec { axes, metric: "value".into(), filter: Default::default() };
        let dir = ctx.output_dir("report");
        std::fs::create_dir_all(&dir).map_err(OpError::io("creating the report folder"))?;
        report::render_plot(&records, &spec, &dir.join("figure.svg"), &dir.join("figure.png"))?;
        Ok(())
    }
}
