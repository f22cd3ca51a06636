//! `plot`: gathers metrics like `table` and draws a paper-style line chart (SVG and PNG): one
//! panel per value of a dimension, x from a sweep axis, one line per series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::table::{check_dimensions, gather_records};
use super::{Gathered, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::config::params::{ParamError, Params};
use crate::report::{self, PlotSpec};

/// Parameters of `plot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotParams {
    /// Figure title.
    #[serde(default)]
    pub title: String,
    /// Dimension giving one panel per value (e.g. `target`).
    #[serde(default)]
    pub panel: Option<String>,
    /// Sweep axis on the horizontal axis (e.g. `p`).
    pub x: String,
    /// Dimensions naming a line (e.g. `["source", "k"]`).
    #[serde(default)]
    pub series: Vec<String>,
    /// Metric on the vertical axis.
    pub metric: String,
    /// Horizontal axis title.
    #[serde(default)]
    pub x_label: String,
    /// Vertical axis title.
    #[serde(default)]
    pub y_label: String,
    /// Log-scale x axis.
    #[serde(default)]
    pub x_log: bool,
    /// Display names of source stages.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Params for PlotParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.x.is_empty() {
            return Err(ParamError::field("x", "`x` must name a sweep axis", None));
        }
        if self.metric.is_empty() {
            return Err(ParamError::field("metric", "`metric` must name a metric, e.g. \"top1\"", None));
        }
        Ok(())
    }
}

/// The `plot` op.
pub struct Plot;

impl StageKind for Plot {
    type Params = PlotParams;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "plot",
        version: 1,
        summary: "gathers metrics over sweep instances into a paper-style line chart (SVG and PNG)",
        inputs: &[super::GATHER_METRICS],
        outputs: &[OutputSpec { name: "report", kind: Kind::Report, doc: "figure.svg and figure.png" }],
        metric_names: &[],
    };

    fn check_gathered(&self, p: &PlotParams, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
        let (x, panel) = (std::slice::from_ref(&p.x), p.panel.as_slice());
        check_dimensions(&[("x", x), ("panel", panel), ("series", &p.series)], gathered)
    }

    fn run(&self, p: PlotParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let records = gather_records(ctx.gathered("inputs"), std::slice::from_ref(&p.metric), &p.labels)?;
        let dims: Vec<String> = p.panel.iter().chain([&p.x]).chain(&p.series).cloned().collect();
        let records = report::aggregate_replicates(records, "value", &dims);
        let spec = PlotSpec {
            title: p.title.clone(),
            panel: p.panel.clone(),
            x: p.x.clone(),
            series: p.series.clone(),
            metric: "value".into(),
            x_label: if p.x_label.is_empty() { p.x.clone() } else { p.x_label.clone() },
            y_label: if p.y_label.is_empty() { p.metric.clone() } else { p.y_label.clone() },
            x_log: p.x_log,
            filter: Default::default(),
        };
        let dir = ctx.output_dir("report");
        std::fs::create_dir_all(&dir).map_err(OpError::io("creating the report folder"))?;
        report::render_plot(&records, &spec, &dir.join("figure.svg"), &dir.join("figure.png"))?;
        Ok(())
    }
}
