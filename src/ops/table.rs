//! `table`: gathers metrics from every instance of the stages it names and lays them out as a
//! paper-style table (markdown and CSV), rows and columns chosen from sweep axes, the source stage
//! and the metric name. What it shares with `plot` and `claims` (the checks on gathered
//! instances, [`gather_records`]) is in `ops/gathered.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::gathered::{
    check_cells, check_dimensions, check_display_texts, check_labels, check_metrics, gather_records, record,
    SPECIAL_DIMENSIONS,
};
use super::{Gathered, Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::config::params::{ParamError, Params};
use crate::config::suggest::did_you_mean_help;
use crate::report::{self, PaperRef, Precision, Record, TableSpec, MAX_DECIMALS, REPLICATE_DIM};

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
    /// Decimals: one count for every metric, or a table of counts by metric (`{ top1 = 1, nmi =
    /// 3 }`; a metric it leaves out gets 1).
    #[serde(default)]
    pub precision: Precision,
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
        match &self.precision {
            Precision::All(n) if *n > MAX_DECIMALS => {
                return Err(ParamError::range("precision", *n, &format!("at most {MAX_DECIMALS}")));
            }
            Precision::PerMetric(by) if by.is_empty() => {
                return Err(ParamError::field(
                    "precision",
                    "`precision` names no metric",
                    Some("give a number of decimals, or name metrics: precision = { top1 = 1, nmi = 3 }".into()),
                ));
            }
            Precision::PerMetric(by) => {
                let shown: Vec<&str> = self.metrics.iter().map(String::as_str).collect();
                if let Some(other) = by.keys().find(|m| !shown.contains(&m.as_str())) {
                    return Err(ParamError::field(
                        &format!("precision.{other}"),
                        format!("`precision` names `{other}`, which the table does not show"),
                        Some(did_you_mean_help(other, &shown, format!("its metrics: {}", shown.join(", ")))),
                    ));
                }
                if let Some((m, n)) = by.iter().find(|(_, n)| **n > MAX_DECIMALS) {
                    return Err(ParamError::range(&format!("precision.{m}"), *n, &format!("at most {MAX_DECIMALS}")));
                }
            }
            Precision::All(_) => {}
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
            if valid.iter().any(|label| report::same_label(label, got)) {
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
    const LABELLING: &'static [&'static str] = &["title", "labels", "paper"];
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
        // 8: the CSV's sd of a cell of one value (a `seeded = false` row beside replicated ones)
        //    is blank, as its half-width is, not 0: no spread was measured.
        version: 8,
        summary: "gathers metrics over sweep instances into a markdown + CSV table",
        inputs: &[super::GATHER_METRICS],
        outputs: &[OutputSpec { name: "report", kind: Kind::Report, doc: "table.md and table.csv" }],
        metrics: &[],
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
            precision: p.precision.clone(),
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
    use super::super::gathered::MAX_LABEL_CHARS;
    use super::super::InputArtifact;
    use super::*;
    use crate::artifact::Metrics;
    use crate::report::AxisValue;
    use serde_json::Value as Json;

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
            unwritten: Vec::new(),
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
        let g = |stage, op| Gathered {
            stage,
            op: crate::ops::find(op).expect("registered"),
            axes: &axes,
            inputs: vec![],
            unwritten: vec![],
        };
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
            Gathered {
                stage,
                op: crate::ops::find(op).expect("registered"),
                axes,
                inputs: Vec::new(),
                unwritten: Vec::new(),
            }
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
