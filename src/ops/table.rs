//! `table`: gathers metrics from every instance of the stages it names and lays them out as a
//! paper-style table (markdown and CSV), rows and columns chosen from sweep axes, the source stage
//! and the metric name. Also shared by `plot`: [`gather_records`] turns gathered metrics into
//! report records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{InputArtifact, InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::Metrics;
use crate::config::params::{self, ParamError, Params};
use crate::report::{self, AxisValue, PaperRef, Record, TableSpec};

/// The paper's own number for one cell, shown beside ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperCell {
    /// Row label as printed.
    pub row: String,
    /// Column label as printed.
    pub column: String,
    /// The paper's value.
    pub value: f64,
}

/// Parameters of `table`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableParams {
    /// Title line.
    #[serde(default)]
    pub title: String,
    /// Dimensions that make a row: axis names, `source` (the stage's label) or `metric`.
    pub rows: Vec<String>,
    /// Dimensions that make a column.
    pub columns: Vec<String>,
    /// Metric names to show; more than one adds the `metric` dimension.
    pub metrics: Vec<String>,
    /// Decimals.
    #[serde(default = "one")]
    pub precision: usize,
    /// Display names of source stages (e.g. `probe_cf = "N_cf"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The paper's numbers, for orientation.
    #[serde(default)]
    pub paper: Vec<PaperCell>,
}

fn one() -> usize {
    1
}

/// Dimensions every table and plot understands besides sweep axes.
pub const SPECIAL_DIMENSIONS: &[&str] = &["source", "metric"];

impl Params for TableParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.metrics.is_empty() {
            return Err(ParamError::field(
                "metrics",
                "`metrics` names no metric",
                Some("e.g. metrics = [\"top1\"]".into()),
            ));
        }
        if self.rows.is_empty() || self.columns.is_empty() {
            return Err(ParamError::field(
                if self.rows.is_empty() { "rows" } else { "columns" },
                "a table needs at least one row and one column dimension",
                Some("dimensions are sweep axis names, \"source\" or \"metric\"".into()),
            ));
        }
        if self.precision > 6 {
            return Err(ParamError::range("precision", self.precision, "at most 6"));
        }
        Ok(())
    }
}

/// Turns gathered metric artifacts into report records, one per (instance, metric).
pub fn gather_records(
    inputs: &[InputArtifact],
    metrics: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Record>, OpError> {
    let mut out = Vec::new();
    for input in inputs {
        let m = Metrics::load(&input.dir)?;
        for name in metrics {
            let Some(&value) = m.values.get(name) else { continue };
            let mut axes: BTreeMap<String, AxisValue> =
                input.axes.iter().map(|(k, v)| (k.clone(), axis_value(v))).collect();
            axes.insert("metric".into(), AxisValue::Str(name.clone()));
            let mut values = BTreeMap::new();
            values.insert("value".to_string(), value);
            out.push(Record {
                source: input.stage.clone(),
                label: labels.get(&input.stage).cloned().unwrap_or_else(|| input.stage.clone()),
                axes,
                metrics: values,
            });
        }
    }
    if out.is_empty() {
        let names: Vec<&str> = inputs.iter().map(|i| i.instance.as_str()).collect();
        return Err(OpError::Invalid(format!(
            "none of the gathered metrics ({}) has any of {:?}",
            names.join(", "),
            metrics
        )));
    }
    Ok(out)
}

fn axis_value(v: &Json) -> AxisValue {
    match v {
        Json::Number(n) if n.is_i64() => AxisValue::Int(n.as_i64().unwrap_or_default()),
        Json::Number(n) => AxisValue::Float(n.as_f64().unwrap_or_default()),
        Json::String(s) => AxisValue::Str(s.clone()),
        other => AxisValue::Str(other.to_string()),
    }
}

/// The `table` op.
pub struct Table;

impl Op for Table {
    fn name(&self) -> &'static str {
        "table"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "gathers metrics over sweep instances into a markdown + CSV table"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[super::GATHER_METRICS]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[OutputSpec { name: "report", kind: Kind::Report, doc: "table.md and table.csv" }]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<TableParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<TableParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: TableParams = ctx.params()?;
        let records = gather_records(ctx.gathered("inputs"), &p.metrics, &p.labels)?;
        let spec = TableSpec {
            title: p.title.clone(),
            rows: p.rows.clone(),
            columns: p.columns.clone(),
            metric: "value".into(),
            precision: p.precision,
            paper: p
                .paper
                .iter()
                .map(|c| PaperRef { row: c.row.clone(), column: c.column.clone(), value: c.value })
                .collect(),
            filter: Default::default(),
        };
        let rendered = report::render_table(&records, &spec)?;
        let dir = ctx.output_dir("report");
        std::fs::create_dir_all(&dir).map_err(OpError::io("creating the report folder"))?;
        std::fs::write(dir.join("table.md"), &rendered.markdown).map_err(OpError::io("writing table.md"))?;
        std::fs::write(dir.join("table.csv"), &rendered.csv).map_err(OpError::io("writing table.csv"))?;
        Ok(())
    }
}
