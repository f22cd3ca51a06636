//! `table`: gathers metrics from every instance of the stages it names and lays them out as a
//! paper-style table (markdown and CSV), rows and columns chosen from sweep axes, the source stage
//! and the metric name. Also shared by `plot`: [`gather_records`] turns gathered metrics into
//! report records.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Gathered, InputArtifact, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::Metrics;
use crate::config::params::{ParamError, Params};
use crate::config::suggest::{did_you_mean, did_you_mean_help};
use crate::report::{self, AxisValue, PaperRef, Record, TableSpec, REPLICATE_DIM};

/// The paper's own number for one cell, shown beside ours.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaperCell {
    /// Row label: the row's values joined by spaces, names bare and numbers as `axis=value`
    /// (`N_cf k=250`, `p=0`).
    pub row: String,
    /// Column label, built the same way (`animal-mnist`, `p=50`).
    pub column: String,
    /// The paper's value.
    pub value: f64,
}

/// Parameters of `table`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableParams {
    /// Title line.
    #[serde(default)]
    pub title: String,
    /// Dimensions that make a row: axis names, `source` (the stage's label) or `metric`.
    pub rows: Vec<String>,
    /// Dimensions that make a column.
    pub columns: Vec<String>,
    /// Metric names to show; with more than one, put `metric` in `rows` or `columns`.
    pub metrics: Vec<String>,
    /// Decimals.
    #[serde(default = "one")]
    #[schemars(range(max = 6))]
    pub precision: usize,
    /// Display names of source stages (e.g. `probe_cf = "N_cf"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The paper's numbers, for orientation.
    #[serde(default)]
    pub paper: Vec<PaperCell>,
    /// A sweep axis to take the best over: each cell shows the highest value among records that
    /// differ only in this axis (the paper's "best performing layer"), and the winners are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_over: Option<String>,
}

fn one() -> usize {
    1
}

/// Longest display name (`labels`) a table or plot takes: a legend entry is drawn on one line,
/// so a 100,000-character one asked for a 5 GB image.
pub const MAX_LABEL_CHARS: usize = 200;

/// Checks the display texts of a table or plot: each on one line (a newline in a label split the
/// table's header row, one in a title added a heading), and each label at most
/// [`MAX_LABEL_CHARS`] long.
pub fn check_display_texts(titles: &[(&str, &str)], labels: &BTreeMap<String, String>) -> Result<(), ParamError> {
    let labels = labels.iter().map(|(k, v)| (format!("labels.{k}"), v.as_str(), true));
    let titles = titles.iter().map(|(f, t)| (f.to_string(), *t, false));
    for (field, text, is_label) in titles.chain(labels) {
        if text.contains(['\n', '\t']) {
            return Err(ParamError::field(
                &field,
                format!("`{field}` holds a line break or a tab: it is drawn on one line"),
                Some("write it on one line, with spaces".into()),
            ));
        }
        let chars = text.chars().count();
        if is_label && chars > MAX_LABEL_CHARS {
            return Err(ParamError::field(
                &field,
                format!("`{field}` is {chars} characters long: at most {MAX_LABEL_CHARS}"),
                Some("a label names a series in a legend or a table's header; shorten it".into()),
            ));
        }
    }
    Ok(())
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
        if self.best_over.as_deref() == Some(REPLICATE_DIM) {
            return Err(ParamError::field(
                "best_over",
                format!(
                    "`best_over` = \"{REPLICATE_DIM}\" would show each cell's luckiest seed: replicates are \
                     summarised as a mean with its 95 % interval"
                ),
                Some("name a sweep axis, or put `replicate` in `rows` or `columns` to see every seed".into()),
            ));
        }
        if let Some(dim) = &self.best_over {
            if self.rows.contains(dim) || self.columns.contains(dim) || SPECIAL_DIMENSIONS.contains(&dim.as_str()) {
                return Err(ParamError::field(
                    "best_over",
                    format!("`best_over` = \"{dim}\" must be a sweep axis that is neither a row nor a column"),
                    None,
                ));
            }
        }
        if self.precision > 6 {
            return Err(ParamError::range("precision", self.precision, "at most 6"));
        }
        check_display_texts(&[("title", &self.title)], &self.labels)?;
        // Each record of a metric named twice would land in its own cell twice.
        if let Some((i, m)) = self.metrics.iter().enumerate().find(|(i, m)| self.metrics[..*i].contains(m)) {
            return Err(ParamError::field(
                &format!("metrics[{i}]"),
                format!("`metrics` names `{m}` twice"),
                Some("list each metric once".into()),
            ));
        }
        Ok(())
    }
}

/// Keeps, among records equal in everything but `dim`, the one with the highest value; returns
/// them and one line per kept record naming the winning value of `dim`.
pub fn best_over(records: Vec<Record>, dim: &str) -> (Vec<Record>, Vec<String>) {
    let mut best: BTreeMap<String, Record> = BTreeMap::new();
    for r in records {
        let mut key_axes = r.axes.clone();
        key_axes.remove(dim);
        let key = format!("{}|{:?}", r.label, key_axes);
        // A NaN (a diverged run) never wins over a number, whichever comes first.
        let better = best.get(&key).is_none_or(|b| {
            let (new, old) = (r.metrics["value"], b.metrics["value"]);
            new > old || (old.is_nan() && !new.is_nan())
        });
        if better {
            best.insert(key, r);
        }
    }
    let notes = best
        .values()
        .map(|r| {
            let at: Vec<String> =
                r.axes.iter().filter(|(k, _)| k.as_str() != dim).map(|(k, v)| format!("{k}={v}")).collect();
            let won = r.axes.get(dim).map_or("-".to_string(), |v| v.to_string());
            format!("- {} {}: best {dim} = {won}", r.label, at.join(" "))
        })
        .collect();
    (best.into_values().collect(), notes)
}

/// Turns gathered metric artifacts into report records, one per (instance, metric).
pub fn gather_records(
    inputs: &[InputArtifact],
    metrics: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Record>, OpError> {
    let mut out = Vec::new();
    // What each gathered stage wrote, and whether any of it was shown: a stage or a metric that
    // gives no cell is a mistake (a `command` stage declares its metrics only by writing them).
    let mut written: BTreeMap<&str, (BTreeSet<String>, bool)> = BTreeMap::new();
    for input in inputs {
        let m = Metrics::load(&input.dir)?;
        let (names, shown) = written.entry(input.stage.as_str()).or_default();
        names.extend(m.values.keys().cloned());
        for name in metrics {
            let Some(&value) = m.values.get(name) else { continue };
            *shown = true;
            out.push(record(&input.stage, &input.axes, name, labels, Some(value)));
        }
    }
    let all: BTreeSet<&str> = written.values().flat_map(|(names, _)| names.iter().map(String::as_str)).collect();
    if let Some(missing) = metrics.iter().find(|m| !all.contains(m.as_str())) {
        let valid: Vec<&str> = all.iter().copied().collect();
        let guess = did_you_mean(missing, &valid).map(|b| format!("did you mean `{b}`? ")).unwrap_or_default();
        let stages: Vec<&str> = written.keys().copied().collect();
        return Err(OpError::Invalid(format!(
            "metric `{missing}` was written by none of the gathered stages ({}); {guess}they wrote: {}",
            stages.join(", "),
            listed(valid)
        )));
    }
    if let Some((stage, (names, _))) = written.iter().find(|(_, (_, shown))| !shown) {
        return Err(OpError::Invalid(format!(
            "the gathered stage `{stage}` wrote none of the metrics shown ({}), so it would have no cell; it wrote: {}",
            metrics.join(", "),
            listed(names.iter().map(String::as_str))
        )));
    }
    Ok(out)
}

/// The record of `metric` from one gathered instance of `stage` at `axes` (its value as `value`),
/// with `metric` as a dimension and the stage's display label.
fn record(
    stage: &str,
    axes: &BTreeMap<String, Json>,
    metric: &str,
    labels: &BTreeMap<String, String>,
    value: Option<f64>,
) -> Record {
    let mut axes: BTreeMap<String, AxisValue> = axes.iter().map(|(k, v)| (k.clone(), axis_value(v))).collect();
    axes.insert("metric".into(), AxisValue::Str(metric.to_string()));
    Record {
        source: stage.to_string(),
        label: labels.get(stage).cloned().unwrap_or_else(|| stage.to_string()),
        axes,
        metrics: value.map(|v| ("value".to_string(), v)).into_iter().collect(),
        replicates: None,
    }
}

/// Checks that every dimension a table or plot names is `source`, `metric` or an axis of a
/// gathered instance, so that a typo fails before anything runs instead of printing an empty label.
pub fn check_dimensions(fields: &[(&str, &[String])], gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    let axes: BTreeSet<&str> = gathered.iter().flat_map(|g| g.axes.keys().map(String::as_str)).collect();
    // Where each dimension was first named: a second place would split cells by a value they
    // already share (a table's diagonal, a line with one point per x).
    let mut named: BTreeMap<&str, &str> = BTreeMap::new();
    for (field, dims) in fields {
        for dim in dims.iter() {
            if let Some(first) = named.insert(dim.as_str(), field) {
                let place =
                    if first == *field { "twice".to_string() } else { format!("in both `{first}` and `{field}`") };
                return Err(ParamError::field(
                    field,
                    format!("the dimension `{dim}` is named {place}"),
                    Some("name each dimension once".into()),
                ));
            }
            if SPECIAL_DIMENSIONS.contains(&dim.as_str()) || axes.contains(dim.as_str()) {
                continue;
            }
            let valid: Vec<&str> = SPECIAL_DIMENSIONS.iter().copied().chain(axes.iter().copied()).collect();
            let help = did_you_mean_help(dim, &valid, format!("dimensions here: {}", valid.join(", ")));
            return Err(ParamError::field(
                field,
                format!("`{field}` names `{dim}`, which is not an axis of any gathered instance"),
                Some(help),
            ));
        }
    }
    Ok(())
}

/// Checks that every stage `labels` names is gathered, so that a misspelt key fails before
/// anything runs instead of leaving the stage's raw name on the page.
pub fn check_labels(labels: &BTreeMap<String, String>, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    let stages: BTreeSet<&str> = gathered.iter().map(|g| g.stage).collect();
    let Some(stray) = labels.keys().find(|k| !stages.contains(k.as_str())) else { return Ok(()) };
    let valid: Vec<&str> = stages.into_iter().collect();
    let help = did_you_mean_help(stray, &valid, format!("the gathered stages: {}", valid.join(", ")));
    Err(ParamError::field(
        &format!("labels.{stray}"),
        format!("`labels` names `{stray}`, which is not a stage this one gathers"),
        Some(help),
    ))
}

/// Checks that no two gathered records would fill one cell of a table or one point of a plot,
/// so the clash fails before anything runs instead of when the report is drawn, after every stage
/// it gathers. Only metrics every run of the instance writes ([`Gathered::surely_writes`]) are
/// counted: a record that may not exist cannot be said to clash (those clashes still fail at run
/// time).
/// Replicates of one instance, and with `best_over` the values of that axis, share a cell by design.
pub fn check_cells(
    field: &str,
    place: &str,
    dims: &[String],
    best_over: Option<&str>,
    metrics: &[String],
    labels: &BTreeMap<String, String>,
    gathered: &[Gathered<'_>],
) -> Result<(), ParamError> {
    // Numbers as the report compares them (50 and 50.0 are one coordinate).
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string()),
        other => other.to_string(),
    };
    let describe = |g: &Gathered<'_>| {
        let axes: Vec<String> = g.axes.iter().map(|(k, v)| format!("{k}={}", text(v))).collect();
        if axes.is_empty() {
            format!("`{}`", g.stage)
        } else {
            format!("`{}[{}]`", g.stage, axes.join(","))
        }
    };
    let merges = |k: &str| k == REPLICATE_DIM || Some(k) == best_over;
    let metric_shown = dims.iter().any(|d| d == "metric");
    let source_shown = dims.iter().any(|d| d == "source");
    // Cell -> (what merges into it, the instance and metric that took it).
    let mut cells: BTreeMap<Vec<Option<String>>, (String, &Gathered<'_>, &String)> = BTreeMap::new();
    // How often each instance was gathered so far: one named by two inputs is two records.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for g in gathered {
        let label = labels.get(g.stage).map_or(g.stage, String::as_str);
        let instance = format!("{}\u{0}{:?}", g.stage, g.axes);
        let occurrence = *seen.entry(instance).and_modify(|n| *n += 1).or_insert(0);
        for metric in metrics.iter().filter(|m| g.surely_writes(m)) {
            let cell: Vec<Option<String>> = dims
                .iter()
                .map(|d| match d.as_str() {
                    "source" => Some(label.to_string()),
                    "metric" => Some(metric.clone()),
                    axis => g.axes.get(axis).map(text),
                })
                .collect();
            let kept: BTreeMap<&String, &Json> = g.axes.iter().filter(|(k, _)| !merges(k)).collect();
            // With `best_over`, records are merged by label; otherwise by stage.
            let who = if best_over.is_some() { label } else { g.stage };
            let identity =
                format!("{who}\u{0}{}\u{0}{kept:?}\u{0}{occurrence}", if metric_shown { "" } else { metric });
            let Some((taken, first, first_metric)) = cells.get(&cell) else {
                cells.insert(cell, (identity, g, metric));
                continue;
            };
            if *taken == identity {
                continue;
            }
            let same_instance = first.stage == g.stage && first.axes == g.axes;
            let differ: BTreeSet<&str> = first
                .axes
                .keys()
                .chain(g.axes.keys())
                .filter(|k| !merges(k) && first.axes.get(*k) != g.axes.get(*k))
                .map(String::as_str)
                .collect();
            let hidden: Vec<&str> = differ.iter().copied().filter(|k| !dims.iter().any(|d| d == k)).collect();
            let (why, help) = if same_instance && *first_metric == metric {
                (
                    "is gathered twice (two inputs name it)".to_string(),
                    "name each instance once in `inputs`".to_string(),
                )
            } else if same_instance {
                (
                    format!("its metrics `{first_metric}` and `{metric}` would fill one {place}"),
                    "add `metric` to the dimensions".to_string(),
                )
            } else if let Some(axis) = hidden.first() {
                (
                    format!(
                        "would fill one {place} ({metric}): they differ only in {}, which the layout does not show",
                        hidden.join(", ")
                    ),
                    format!("add `{axis}` to the dimensions, or gather fewer instances"),
                )
            } else if !differ.is_empty() {
                let axis = differ.first().copied().unwrap_or_default();
                (
                    format!("would fill one {place} ({metric}): their values of `{axis}` are one number"),
                    format!("list each value of `{axis}` once"),
                )
            } else if !source_shown {
                (
                    format!("would fill one {place} ({metric}): they come from different stages and `source` is no dimension"),
                    "add `source` to the dimensions".to_string(),
                )
            } else {
                (
                    format!("would fill one {place} ({metric}): both are labelled `{label}`"),
                    "give them distinct `labels`".to_string(),
                )
            };
            let message = if same_instance && *first_metric == metric {
                format!("{} {why}", describe(g))
            } else if same_instance {
                format!("{}: {why}", describe(g))
            } else {
                format!("{} and {} {why}", describe(first), describe(g))
            };
            return Err(ParamError::field(field, message, Some(help)));
        }
    }
    Ok(())
}

/// Checks that every metric a table or plot names is written by some gathered instance, so that
/// a typo fails before anything runs instead of being left out of the page, and that every
/// gathered stage writes one of them. Sure only where the gathered ops declare their metric
/// names; one that does not (a `command` stage) may write any, and is checked as it runs.
pub fn check_metrics(field: &str, metrics: &[String], gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    if !gathered.is_empty() && gathered.iter().all(|g| !g.op.metric_names().is_empty()) {
        missing_metric(field, metrics, gathered)?;
    }
    let Some(silent) = silent_stage(metrics, gathered) else { return Ok(()) };
    let lacked = gathered
        .iter()
        .filter(|g| g.stage == silent)
        .find_map(|g| metrics.iter().find_map(|m| g.lacks_input_for(m).map(|slot| (m, slot))));
    if let Some((metric, slot)) = lacked {
        return Err(lacks_input(field, metric, silent, slot));
    }
    let writes: BTreeSet<&str> =
        gathered.iter().filter(|g| g.stage == silent).flat_map(Gathered::metric_names).collect();
    Err(ParamError::field(
        field,
        format!(
            "`{field}` names none of the metrics that the gathered stage `{silent}` writes, so it would have no cell"
        ),
        Some(format!(
            "`{silent}` writes {}; name one of them, or leave `{silent}` out of `inputs`",
            writes.into_iter().collect::<Vec<_>>().join(", ")
        )),
    ))
}

/// `field` names `metric`, which `stage` writes only beside its input `slot`, left unwired.
fn lacks_input(field: &str, metric: &str, stage: &str, slot: &str) -> ParamError {
    ParamError::field(
        field,
        format!("`{field}` names `{metric}`, which `{stage}` writes only with its `{slot}` input"),
        Some(format!("give `{stage}` a `{slot}` input, or name another metric")),
    )
}

/// Metric names as a message lists them: `a, b`, or `no metric`.
pub(super) fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        "no metric".to_string()
    } else {
        names.join(", ")
    }
}

/// A metric of `metrics` that no gathered instance (each declaring its metrics) writes.
fn missing_metric(field: &str, metrics: &[String], gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    let written: BTreeSet<&str> = gathered.iter().flat_map(Gathered::metric_names).collect();
    let Some(missing) = metrics.iter().find(|m| !written.contains(m.as_str())) else { return Ok(()) };
    // A metric the op writes only beside an input none of these instances reads.
    if let Some((g, slot)) = gathered.iter().find_map(|g| g.lacks_input_for(missing).map(|slot| (g, slot))) {
        return Err(lacks_input(field, missing, g.stage, slot));
    }
    let valid: Vec<&str> = written.into_iter().collect();
    let help = did_you_mean_help(missing, &valid, format!("metrics the gathered stages write: {}", valid.join(", ")));
    let stages: BTreeSet<&str> = gathered.iter().map(|g| g.stage).collect();
    let stages: Vec<String> = stages.into_iter().map(|s| format!("`{s}`")).collect();
    Err(ParamError::field(
        field,
        format!("`{field}` names `{missing}`, which none of the gathered stages ({}) writes", stages.join(", ")),
        Some(help),
    ))
}

/// A gathered stage that can write none of `metrics` (every instance of it declaring what it
/// writes): it would be gathered and then left out of the page without a word.
fn silent_stage<'a>(metrics: &[String], gathered: &[Gathered<'a>]) -> Option<&'a str> {
    let stages: BTreeSet<&str> = gathered.iter().map(|g| g.stage).collect();
    stages.into_iter().find(|&stage| {
        let mut instances = gathered.iter().filter(|g| g.stage == stage);
        instances.clone().all(|g| !g.op.metric_names().is_empty())
            && !instances.any(|g| g.metric_names().iter().any(|m| metrics.iter().any(|x| x == m)))
    })
}

fn axis_value(v: &Json) -> AxisValue {
    match v {
        Json::Number(n) if n.is_i64() => AxisValue::Int(n.as_i64().unwrap_or_default()),
        Json::Number(n) => AxisValue::Float(n.as_f64().unwrap_or_default()),
        Json::String(s) => AxisValue::Str(s.clone()),
        other => AxisValue::Str(other.to_string()),
    }
}

/// Checks that every paper cell names a row and a column the table will have, so that a number
/// meant to sit beside ours is not dropped to a footnote for a label written another way.
fn check_paper(p: &TableParams, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    if p.paper.is_empty() {
        return Ok(());
    }
    let (mut rows, mut columns) = (BTreeSet::new(), BTreeSet::new());
    for g in gathered {
        for metric in &p.metrics {
            let record = record(g.stage, g.axes, metric, &p.labels, None);
            let (row, column) = report::cell_labels(&record, &p.rows, &p.columns, "value");
            rows.insert(row);
            columns.insert(column);
        }
    }
    for (i, cell) in p.paper.iter().enumerate() {
        for (field, got, valid) in [("row", &cell.row, &rows), ("column", &cell.column, &columns)] {
            if valid.contains(got) {
                continue;
            }
            let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
            let shown = valid.iter().take(12).copied().collect::<Vec<_>>().join(", ");
            let more = valid.len().saturating_sub(12);
            let shown = if more > 0 { format!("{shown} and {more} more") } else { shown };
            let help = did_you_mean_help(got, &valid, format!("the table's {field}s: {shown}"));
            return Err(ParamError::field(
                &format!("paper[{i}].{field}"),
                format!("the paper value for {field} `{got}` matches no {field} of the table"),
                Some(format!("{help} (numbers read `axis=value`)")),
            ));
        }
    }
    Ok(())
}

/// The `table` op.
pub struct Table;

impl StageKind for Table {
    type Params = TableParams;
    const JOB: super::JobShape = super::JobShape::IN_DRIVER;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "table",
        // 2: Student t intervals at every n (the normal quantile from n = 30 before); `best_over`
        //    never keeps a NaN cell over a number.
        // 3: a table without a title starts at its header row (29a8efe wrote no `### ` line for
        //    it without this bump), and a replicate gathered twice is refused (596ef48; it was
        //    counted twice): a cache from before served the old page or the doubled counts.
        // 4: labels escape `*`, `` ` `` and `\` for markdown (a value `c|d**e` showed bold on
        //    the page): a cache from before served the unescaped table.
        // 5: means measured from the first replicate (2542e63, replaced by 6).
        // 6: equal replicates are their own mean (`stats::Summary`; the plain sum could miss
        //    it by a bit), other means the bits of v4's again; a half-width that would round to
        //    0 at the table's precision gets the decimals that show it.
        // 7: numbers from 1e15 on are written with an exponent (1e308 printed 309 digits);
        //    replicates beyond 2^500 or below 2^-500 are summarised after an exact scaling (their
        //    mean was inf, their spread 0); a gathered stage or a metric without a cell fails (it
        //    was left out): a cache from before served those pages.
        version: 7,
        summary: "gathers metrics over sweep instances into a markdown + CSV table",
        inputs: &[super::GATHER_METRICS],
        outputs: &[OutputSpec { name: "report", kind: Kind::Report, doc: "table.md and table.csv" }],
        metric_names: &[],
    };

    fn check_gathered(&self, p: &TableParams, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
        check_dimensions(&[("rows", &p.rows), ("columns", &p.columns)], gathered)?;
        check_dimensions(&[("best_over", p.best_over.as_slice())], gathered)?;
        check_labels(&p.labels, gathered)?;
        check_metrics("metrics", &p.metrics, gathered)?;
        let dims: Vec<String> = p.rows.iter().chain(&p.columns).cloned().collect();
        check_cells("rows", "cell", &dims, p.best_over.as_deref(), &p.metrics, &p.labels, gathered)?;
        check_paper(p, gathered)
    }

    fn run(&self, p: TableParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let records = gather_records(ctx.gathered("inputs"), &p.metrics, &p.labels)?;
        let dims: Vec<String> = p.rows.iter().chain(&p.columns).cloned().collect();
        let mut records = report::aggregate_replicates(records, "value", &dims, &p.title)?;
        let mut notes = Vec::new();
        if let Some(dim) = &p.best_over {
            (records, notes) = best_over(records, dim);
        }
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
        let mut rendered = report::render_table(&records, &spec)?;
        if !notes.is_empty() {
            let by = p.best_over.as_deref().unwrap_or_default();
            rendered.markdown.push_str(&format!("\nEach cell is the best over `{by}`:\n{}\n", notes.join("\n")));
        }
        let dir = ctx.output_dir("report");
        std::fs::create_dir_all(&dir).map_err(OpError::io("creating the report folder"))?;
        std::fs::write(dir.join("table.md"), &rendered.markdown).map_err(OpError::io("writing table.md"))?;
        std::fs::write(dir.join("table.csv"), &rendered.csv).map_err(OpError::io("writing table.csv"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metric an op writes only beside an optional input is refused, naming that input, for an
    /// instance without it, and accepted for one with it.
    #[test]
    fn a_metric_that_needs_an_input_the_instance_lacks_is_refused() {
        let axes = BTreeMap::new();
        let km = |inputs: Vec<&'static str>| Gathered {
            stage: "km",
            op: crate::ops::find("kmeans").expect("registered"),
            axes: &axes,
            inputs,
        };
        let nmi = ["nmi".to_string()];
        let err = check_metrics("metrics", &nmi, &[km(vec!["features"])]).unwrap_err();
        assert!(err.message.contains("`km` writes only with its `truth` input"), "{}", err.message);
        assert!(check_metrics("metrics", &nmi, &[km(vec!["features", "truth"])]).is_ok());
        assert!(check_metrics("metrics", &["inertia".to_string()], &[km(vec!["features"])]).is_ok());
    }

    /// Display texts are one line each, and a label is at most `MAX_LABEL_CHARS` long (a plot
    /// sized its legend to a 100,000-character label and asked for 5 GB).
    #[test]
    fn display_texts_are_one_line_and_labels_short() {
        let labels = |v: &str| BTreeMap::from([("km".to_string(), v.to_string())]);
        assert!(check_display_texts(&[("title", "T")], &labels("k-means")).is_ok());
        let err = check_display_texts(&[("title", "T1\n## T2")], &labels("k")).unwrap_err();
        assert!(err.message.contains("`title` holds a line break"), "{}", err.message);
        let long = "x".repeat(MAX_LABEL_CHARS + 1);
        let err = check_display_texts(&[], &labels(&long)).unwrap_err();
        assert!(err.message.contains("`labels.km` is 201 characters long"), "{}", err.message);
        assert!(check_display_texts(&[("title", &long)], &labels(&long[1..])).is_ok(), "titles wrap");
    }

    /// A gathered stage that can write none of the metrics named is refused before anything
    /// runs (it would be gathered and left out of the page); one that writes one of them is not.
    #[test]
    fn a_gathered_stage_with_no_cell_is_refused_before_anything_runs() {
        let axes = BTreeMap::new();
        let g =
            |stage, op| Gathered { stage, op: crate::ops::find(op).expect("registered"), axes: &axes, inputs: vec![] };
        let both = [g("probe", "linear_probe"), g("km", "kmeans")];
        let err = check_metrics("metrics", &["top1".to_string()], &both).unwrap_err();
        assert!(err.message.contains("gathered stage `km`"), "{}", err.message);
        assert!(err.help.as_deref().unwrap_or_default().contains("inertia"), "{:?}", err.help);
        assert!(check_metrics("metrics", &["top1".to_string(), "inertia".to_string()], &both).is_ok());
        // One that would write them with an input it lacks is told to wire it.
        let err = check_metrics("metrics", &["nmi".to_string()], &[g("pl", "per_label_kmeans")]).unwrap_err();
        assert!(err.message.contains("`pl` writes only with its `truth` input"), "{}", err.message);
        // A command stage declares nothing: it is checked as it runs.
        assert!(
            check_metrics("metrics", &["top1".to_string()], &[g("probe", "linear_probe"), g("c", "command")]).is_ok()
        );
    }

    /// As it runs, a metric no gathered stage wrote, or a gathered stage that wrote none of the
    /// metrics named, fails the table, naming what was written; it was left out without a word.
    #[test]
    fn a_metric_or_a_stage_without_a_cell_fails_as_the_table_runs() {
        let dir = tempfile::tempdir().unwrap();
        let input = |stage: &str, values: &[(&str, f64)]| {
            let d = dir.path().join(stage);
            std::fs::create_dir_all(&d).unwrap();
            let values = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            Metrics { values, details: Json::Null }.save(&d).unwrap();
            InputArtifact {
                dir: d,
                kind: Kind::Metrics,
                instance: stage.into(),
                stage: stage.into(),
                axes: BTreeMap::new(),
            }
        };
        let inputs = [input("probe", &[("top1", 50.0)]), input("ncm", &[("ncm_top1", 40.0)])];
        let labels = BTreeMap::new();
        let names = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = gather_records(&inputs, &names(&["ncm_top2", "top1"]), &labels).unwrap_err().to_string();
        assert!(err.contains("metric `ncm_top2`") && err.contains("did you mean `ncm_top1`"), "{err}");
        let err = gather_records(&inputs, &names(&["top1"]), &labels).unwrap_err().to_string();
        assert!(err.contains("stage `ncm` wrote none") && err.contains("it wrote: ncm_top1"), "{err}");
        assert_eq!(gather_records(&inputs, &names(&["top1", "ncm_top1"]), &labels).unwrap().len(), 2);
    }

    /// Only records every run writes can clash before anything runs: a command stage (it may
    /// write any metric, or none) beside a probe under one label is no clash; replicates and the
    /// `best_over` axis share a cell; an instance gathered twice, or a hidden axis, is refused.
    #[test]
    fn cells_clash_only_on_records_that_surely_exist() {
        fn g<'a>(stage: &'a str, op: &str, axes: &'a BTreeMap<String, Json>) -> Gathered<'a> {
            Gathered { stage, op: crate::ops::find(op).expect("registered"), axes, inputs: Vec::new() }
        }
        let ax = |pairs: &[(&str, Json)]| -> BTreeMap<String, Json> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let (none, rep0, rep1) = (&ax(&[]), &ax(&[("replicate", 0.into())]), &ax(&[("replicate", 1.into())]));
        let (l3, l4) = (&ax(&[("layer", "res3".into())]), &ax(&[("layer", "res4".into())]));
        let labels: BTreeMap<String, String> =
            [("probe", "pixels"), ("ext", "pixels")].map(|(a, b)| (a.into(), b.into())).into();
        let dims = ["source".to_string(), "metric".to_string()];
        let metrics = ["top1".to_string(), "nmi".to_string()];
        let check = |gathered: &[Gathered<'_>], best: Option<&str>| {
            check_cells("rows", "cell", &dims, best, &metrics, &labels, gathered)
        };
        assert!(check(&[g("probe", "linear_probe", none), g("ext", "command", none)], None).is_ok());
        assert!(check(&[g("probe", "linear_probe", rep0), g("probe", "linear_probe", rep1)], None).is_ok());
        assert!(check(&[g("probe", "linear_probe", l3), g("probe", "linear_probe", l4)], Some("layer")).is_ok());
        let twice = check(&[g("probe", "linear_probe", none), g("probe", "linear_probe", none)], None).unwrap_err();
        assert!(twice.message.contains("gathered twice"), "{}", twice.message);
        let hidden = check(&[g("probe", "linear_probe", l3), g("probe", "linear_probe", l4)], None).unwrap_err();
        assert!(hidden.message.contains("differ only in layer"), "{}", hidden.message);
        let labelled = check(&[g("probe", "linear_probe", none), g("ext", "linear_probe", none)], None).unwrap_err();
        assert!(labelled.message.contains("both are labelled `pixels`"), "{}", labelled.message);
    }

    fn rec(label: &str, layer: &str, target: &str, value: f64) -> Record {
        Record {
            source: label.into(),
            label: label.into(),
            axes: [("layer".to_string(), AxisValue::from(layer)), ("target".to_string(), AxisValue::from(target))]
                .into(),
            replicates: None,
            metrics: [("value".to_string(), value)].into(),
        }
    }

    #[test]
    fn best_over_keeps_the_highest_value_per_cell_and_names_the_winner() {
        let records = vec![
            rec("N_pre", "res4", "mnist", 80.0),
            rec("N_pre", "res5", "mnist", 70.0),
            rec("N_cf", "res4", "mnist", 75.0),
            rec("N_cf", "res5", "mnist", 78.0),
            rec("N_pre", "res5", "fashion", 60.0),
        ];
        let (best, notes) = best_over(records, "layer");
        let mut got: Vec<(String, String, f64)> =
            best.iter().map(|r| (r.label.clone(), r.axes["layer"].to_string(), r.metrics["value"])).collect();
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(
            got,
            vec![
                ("N_cf".into(), "res5".into(), 78.0),
                ("N_pre".into(), "res4".into(), 80.0),
                ("N_pre".into(), "res5".into(), 60.0)
            ]
        );
        assert!(notes.contains(&"- N_pre target=mnist: best layer = res4".to_string()), "{notes:?}");
    }

    #[test]
    fn best_over_keeps_a_number_over_a_nan_in_either_order() {
        for flip in [false, true] {
            let mut records = vec![rec("N_pre", "res4", "mnist", f64::NAN), rec("N_pre", "res5", "mnist", 70.0)];
            if flip {
                records.reverse();
            }
            let (best, _) = best_over(records, "layer");
            assert_eq!(best.len(), 1);
            assert_eq!((best[0].axes["layer"].to_string(), best[0].metrics["value"]), ("res5".into(), 70.0));
        }
    }

    #[test]
    fn best_over_a_row_dimension_is_rejected() {
        let raw =
            serde_json::json!({"rows": ["layer"], "columns": ["source"], "metrics": ["top1"], "best_over": "layer"});
        assert_eq!(crate::config::params::normalize::<TableParams>(&raw).unwrap_err().path, "best_over");
    }
}
