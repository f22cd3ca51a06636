//! What aggregating stages (`table`, `plot`, `claims`) gather: the upstream instances as seen
//! before anything runs, the checks made on them then (dimensions, labels, cells, metrics), and
//! the records read from their metrics when the stage runs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::{InputArtifact, Op, OpError};
use crate::artifact::Metrics;
use crate::config::params::{About, ParamError};
use crate::config::suggest::{did_you_mean, did_you_mean_help};
use crate::report::{AxisValue, Record, REPLICATE_DIM};

/// Dimensions every table and plot understands besides sweep axes.
pub const SPECIAL_DIMENSIONS: &[&str] = &["source", "metric"];

/// One upstream instance an aggregating stage gathers, as seen before anything runs.
#[derive(Clone)]
pub struct Gathered<'a> {
    /// The upstream stage's name.
    pub stage: &'a str,
    /// Its op.
    pub op: &'static dyn Op,
    /// Its axis values.
    pub axes: &'a BTreeMap<String, Json>,
    /// The input slots it reads (what decides some of its metrics: `kmeans`'s NMI needs `truth`).
    pub inputs: Vec<&'a str>,
    /// Metrics its op declares that it will not write, given what its inputs hold, with why
    /// ([`Op::unwritten_metrics`]).
    pub unwritten: Vec<(&'static str, String)>,
}

impl Gathered<'_> {
    /// The metrics this instance can write: its op's, less those whose input it lacks; empty
    /// where the op does not declare them.
    pub fn metric_names(&self) -> Vec<&'static str> {
        let writable = |m: &&str| self.lacks_input_for(m).is_none() && self.unwritten_because(m).is_none();
        self.op.metric_names().into_iter().filter(writable).collect()
    }

    /// Why this instance will not write `metric`, though its op can, given its inputs' facts.
    pub fn unwritten_because(&self, metric: &str) -> Option<&str> {
        self.unwritten.iter().find(|(m, _)| *m == metric).map(|(_, why)| why.as_str())
    }

    /// Whether every run of this instance writes `metric`: its op always does, or does whenever
    /// an input this instance has is wired (what a table may count on before anything runs).
    pub fn surely_writes(&self, metric: &str) -> bool {
        super::metric_spec::surely_written(self.op.metrics(), metric, &self.inputs)
    }

    /// The input `metric` needs and this instance lacks, if any.
    pub fn lacks_input_for(&self, metric: &str) -> Option<&'static str> {
        super::metric_spec::lacking_input(self.op.metrics(), metric, &self.inputs)
    }
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
pub(super) fn record(
    stage: &str,
    axes: &BTreeMap<String, Json>,
    metric: &str,
    labels: &BTreeMap<String, String>,
    value: Option<f64>,
) -> Record {
    let mut axes: BTreeMap<String, AxisValue> = axes.iter().map(|(k, v)| (k.clone(), axis_value(v))).collect();
    axes.insert(crate::report::METRIC_DIM.into(), AxisValue::Str(metric.to_string()));
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
    Err(ungathered(
        &format!("labels.{stray}"),
        format!("`labels` names `{stray}`, which is not a stage this one gathers"),
        stray,
        &valid,
    ))
}

/// An error naming `name`, which is not among the `gathered` stages: the help offers the
/// closest of them, and the plan replaces it when `name` is a stage of the file that `inputs`
/// leaves out (the usual cause).
pub fn ungathered(at: &str, message: String, name: &str, gathered: &[&str]) -> ParamError {
    let help = did_you_mean_help(name, gathered, format!("the gathered stages: {}", gathered.join(", ")));
    ParamError {
        about: Some(Box::new(About::Ungathered(name.to_string()))),
        ..ParamError::field(at, message, Some(help))
    }
}

/// An axis value as the report compares coordinates (`report::AxisValue`): 50 and 50.0 are
/// one, and so are -0 and 0; integers past 2^53 keep their digits.
pub fn coordinate_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => (f + 0.0).to_string(),
            (None, None) => n.to_string(),
        },
        other => other.to_string(),
    }
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
    let text = coordinate_text;
    // Named as written: -0 and 0 share a cell but are two instances.
    let written =
        |v: &Json| if v.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) { "-0".into() } else { text(v) };
    let describe = |g: &Gathered<'_>| {
        let axes: Vec<String> = g.axes.iter().map(|(k, v)| format!("{k}={}", written(v))).collect();
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
            // One stage's records merge (over replicates, and `best_over`'s values); two stages
            // under one label do not: the best of two methods would be shown as one's.
            let identity =
                format!("{}\u{0}{}\u{0}{kept:?}\u{0}{occurrence}", g.stage, if metric_shown { "" } else { metric });
            let Some((taken, first, first_metric)) = cells.get(&cell) else {
                cells.insert(cell, (identity, g, metric));
                continue;
            };
            if *taken == identity {
                continue;
            }
            // By the text, not by `==`, under which the numbers -0.0 and 0.0 are one.
            let same_instance = first.stage == g.stage && format!("{:?}", first.axes) == format!("{:?}", g.axes);
            let differ: BTreeSet<&str> = first
                .axes
                .keys()
                .chain(g.axes.keys())
                .filter(|k| !merges(k) && format!("{:?}", first.axes.get(*k)) != format!("{:?}", g.axes.get(*k)))
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
    // Why it writes none: an input it lacks, or what its inputs hold (a probe of four classes).
    for g in gathered.iter().filter(|g| g.stage == silent) {
        for metric in metrics {
            if let Some(slot) = g.lacks_input_for(metric) {
                return Err(lacks_input(field, metric, silent, slot));
            }
            if let Some(why) = g.unwritten_because(metric) {
                return Err(unwritten(field, metric, silent, why));
            }
        }
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
pub(super) fn lacks_input(field: &str, metric: &str, stage: &str, slot: &str) -> ParamError {
    ParamError::field(
        field,
        format!("`{field}` names `{metric}`, which `{stage}` writes only with its `{slot}` input"),
        Some(format!("give `{stage}` a `{slot}` input, or name another metric")),
    )
}

/// `field` names `metric`, which `stage`'s op writes but not from the inputs it is fed (`why`).
pub(super) fn unwritten(field: &str, metric: &str, stage: &str, why: &str) -> ParamError {
    ParamError::field(
        field,
        format!("`{field}` names `{metric}`, which `{stage}` will not write: {why}"),
        Some("name another metric".to_string()),
    )
}

/// Metric names as a message lists them: `a, b`, or `no metric`.
pub(super) fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    // A command stage may write millions of names: the message lists a screenful.
    const SHOWN: usize = 30;
    let names: Vec<&str> = names.into_iter().collect();
    match names.len() {
        0 => "no metric".to_string(),
        n if n > SHOWN => format!("{} and {} more", names[..SHOWN].join(", "), n - SHOWN),
        _ => names.join(", "),
    }
}

/// A metric of `metrics` that no gathered instance (each declaring its metrics) writes.
pub(super) fn missing_metric(field: &str, metrics: &[String], gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
    let written: BTreeSet<&str> = gathered.iter().flat_map(Gathered::metric_names).collect();
    let Some(missing) = metrics.iter().find(|m| !written.contains(m.as_str())) else { return Ok(()) };
    // A metric the op writes only beside an input none of these instances reads.
    if let Some((g, slot)) = gathered.iter().find_map(|g| g.lacks_input_for(missing).map(|slot| (g, slot))) {
        return Err(lacks_input(field, missing, g.stage, slot));
    }
    if let Some((g, why)) = gathered.iter().find_map(|g| g.unwritten_because(missing).map(|why| (g, why))) {
        return Err(unwritten(field, missing, g.stage, why));
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
pub(super) fn silent_stage<'a>(metrics: &[String], gathered: &[Gathered<'a>]) -> Option<&'a str> {
    let stages: BTreeSet<&str> = gathered.iter().map(|g| g.stage).collect();
    stages.into_iter().find(|&stage| {
        let mut instances = gathered.iter().filter(|g| g.stage == stage);
        instances.clone().all(|g| !g.op.metric_names().is_empty())
            && !instances.any(|g| g.metric_names().iter().any(|m| metrics.iter().any(|x| x == m)))
    })
}

pub(super) fn axis_value(v: &Json) -> AxisValue {
    match v {
        Json::Number(n) if n.is_i64() => AxisValue::Int(n.as_i64().unwrap_or_default()),
        Json::Number(n) => AxisValue::Float(n.as_f64().unwrap_or_default()),
        Json::String(s) => AxisValue::Str(s.clone()),
        other => AxisValue::Str(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::coordinate_text;
    use serde_json::json;

    /// Coordinates are told apart exactly as the report's `AxisValue` tells them apart, so a
    /// clash the report would refuse is refused before anything runs.
    #[test]
    fn coordinates_read_as_the_report_compares_them() {
        let text = |v| coordinate_text(&v);
        assert_eq!(text(json!(50)), text(json!(50.0)));
        assert_eq!(text(json!(-0.0)), text(json!(0)));
        assert_ne!(text(json!(9007199254740993i64)), text(json!(9007199254740992.0)));
        assert_eq!(text(json!(0.5)), "0.5");
        assert_eq!(text(json!("a")), "a");
    }
}
