//! The record model shared by tables and plots, and the rules that turn records
//! into ordered keys (row/column/panel/series tuples).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// Dimension name that refers to [`Record::label`] instead of an axis.
pub const SOURCE_DIM: &str = "source";

/// Dimension name under which a table or plot of several metrics keeps each record's metric.
pub const METRIC_DIM: &str = "metric";

/// Dimension values a record must have to be included (all must match).
pub type Filter = BTreeMap<String, AxisValue>;

/// One measured value with the coordinates it was measured at: the stage it came from and its sweep-axis values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Stage that produced the measurement, e.g. `probe_cf`.
    pub source: String,
    /// Display name of the method, e.g. `N_cf`; addressed as the dimension [`SOURCE_DIM`].
    pub label: String,
    /// Sweep coordinates, e.g. `p=50, k=250, target="animal-mnist"`.
    #[serde(default)]
    pub axes: BTreeMap<String, AxisValue>,
    /// Measured values, e.g. `top1`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// For a record that stands for several replicates: their summary (the metric holds the mean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<Summary>,
}

/// The dimension that numbers replicates.
pub const REPLICATE_DIM: &str = crate::stats::REPLICATE;

/// Merges records that differ only in their replicate into one record per cell: `metric` becomes
/// the replicates' mean and [`Record::replicates`] their summary. Records without a replicate
/// axis, and every record when `keep` names the replicate dimension (a table by replicate), pass
/// through unchanged.
pub fn aggregate_replicates(
    records: Vec<Record>,
    metric: &str,
    keep: &[String],
    title: &str,
) -> Result<Vec<Record>, super::ReportError> {
    if keep.iter().any(|d| d == REPLICATE_DIM) || !records.iter().any(|r| r.axes.contains_key(REPLICATE_DIM)) {
        return Ok(records);
    }
    // Group in first-appearance order so that string dimensions keep the caller's order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, (Record, Vec<(AxisValue, f64)>)> = BTreeMap::new();
    for r in records {
        let mut axes = r.axes.clone();
        let rep = axes.remove(REPLICATE_DIM);
        let Some(&value) = r.metrics.get(metric) else { continue };
        let key = format!("{}\u{0}{}\u{0}{axes:?}", r.source, r.label);
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (Record { axes, metrics: BTreeMap::new(), replicates: None, ..r.clone() }, Vec::new())
        });
        let rep = rep.unwrap_or(AxisValue::Int(0));
        // One replicate twice (an instance gathered by two inputs) would be counted twice in
        // the mean and the interval, as if it were more evidence.
        if entry.1.iter().any(|(seen, _)| *seen == rep) {
            return Err(super::ReportError::Duplicate {
                title: title.to_string(),
                cell: format!("one cell as replicate {rep} (one instance gathered by two inputs?)"),
                first: entry.0.describe(),
                second: r.describe(),
            });
        }
        entry.1.push((rep, value));
    }
    Ok(order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|(mut rec, mut values)| {
            values.sort_by(|a, b| a.0.cmp(&b.0));
            let vals: Vec<f64> = values.into_iter().map(|(_, v)| v).collect();
            let summary = Summary::of(&vals);
            rec.metrics.insert(metric.to_string(), summary.mean);
            rec.replicates = Some(summary);
            rec
        })
        .collect())
}

/// A sweep coordinate: numbers compare numerically, strings lexically, numbers before strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AxisValue {
    /// An integer coordinate such as `k = 250`.
    Int(i64),
    /// A real coordinate such as `p = 0.5`.
    Float(f64),
    /// A categorical coordinate such as `target = "animal-mnist"`.
    Str(String),
}

impl AxisValue {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AxisValue::Int(i) => Some(*i as f64),
            AxisValue::Float(f) => Some(*f),
            AxisValue::Str(_) => None,
        }
    }
}

impl Ord for AxisValue {
    fn cmp(&self, other: &Self) -> Ordering {
        use AxisValue::*;
        match (self, other) {
            // Exact comparison where possible; i64 -> f64 would lose precision above 2^53.
            (Int(a), Int(b)) => a.cmp(b),
            (Str(a), Str(b)) => a.cmp(b),
            (Str(_), _) => Ordering::Greater,
            (_, Str(_)) => Ordering::Less,
            // total_cmp keeps the order total even with NaN in the data; -0 is 0, as it is to
            // an integer 0.
            (Float(a), Float(b)) => (a + 0.0).total_cmp(&(b + 0.0)),
            (Int(a), Float(b)) => int_against_float(*a, *b),
            (Float(a), Int(b)) => int_against_float(*b, *a).reverse(),
        }
    }
}

/// `i` against `f` by their exact values: through f64, 2^53 + 1 equalled 2^53.0, which is less
/// than it as an integer, and a sort may panic on an order that is not transitive. NaNs sort
/// at the ends, as `total_cmp` puts them among floats.
fn int_against_float(i: i64, f: f64) -> Ordering {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return if f.is_sign_negative() { Ordering::Greater } else { Ordering::Less };
    }
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // Exact: |whole| < 2^63 is an integer, and f - whole is f's fraction.
    i.cmp(&(whole as i64)).then(0.0f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal))
}

impl PartialOrd for AxisValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Equality follows the ordering so that Int(50) and Float(50.0) are one coordinate.
impl PartialEq for AxisValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for AxisValue {}

impl fmt::Display for AxisValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AxisValue::Int(i) => write!(f, "{i}"),
            // `{}` on f64 prints the shortest round-trip form: 0.5, 50, 1e-7.
            AxisValue::Float(x) => write!(f, "{x}"),
            AxisValue::Str(s) => f.write_str(s),
        }
    }
}

impl From<i64> for AxisValue {
    fn from(v: i64) -> Self {
        AxisValue::Int(v)
    }
}

impl From<f64> for AxisValue {
    fn from(v: f64) -> Self {
        AxisValue::Float(v)
    }
}

impl From<&str> for AxisValue {
    fn from(v: &str) -> Self {
        AxisValue::Str(v.to_string())
    }
}

impl Record {
    /// The record's value for a dimension: its label for [`SOURCE_DIM`], else the axis value.
    pub fn dim(&self, dim: &str) -> Option<AxisValue> {
        if dim == SOURCE_DIM {
            Some(AxisValue::Str(self.label.clone()))
        } else {
            self.axes.get(dim).cloned()
        }
    }

    /// Short human description used in error messages, e.g. `N_cf (probe_cf) {k=250, p=50}`.
    pub fn describe(&self) -> String {
        let axes: Vec<String> = self.axes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} ({}) {{{}}}", self.label, self.source, axes.join(", "))
    }

    /// Whether every filter entry matches this record's dimension value.
    pub fn matches(&self, filter: &Filter) -> bool {
        filter.iter().all(|(dim, want)| self.dim(dim).as_ref() == Some(want))
    }
}

/// A tuple of dimension values; `None` where a record lacks the dimension.
pub(crate) type Key = Vec<Option<AxisValue>>;

/// The key of `record` over `dims`.
pub(crate) fn key_of(record: &Record, dims: &[String]) -> Key {
    dims.iter().map(|d| record.dim(d)).collect()
}

/// Human label of a key: strings bare, numbers as `dim=value`, missing parts left out,
/// joined by spaces (`["source","k"]` -> `N_cf k=250`). Bare numbers like "250" would
/// not say what they measure, while strings such as a data-set name speak for themselves.
pub(crate) fn key_label(dims: &[String], key: &Key) -> String {
    let parts: Vec<String> = dims
        .iter()
        .zip(key)
        .filter_map(|(dim, v)| match v {
            None => None,
            Some(AxisValue::Str(s)) => Some(s.clone()),
            Some(num) => Some(format!("{dim}={num}")),
        })
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" ")
    }
}

/// Per-dimension ordering of the values seen in a record set.
///
/// Missing values come first (they are usually baselines that lack a sweep axis),
/// then numbers ascending, then strings in order of first appearance, so the caller
/// controls the order of methods and data sets simply by the order of its records.
pub(crate) struct KeyOrder {
    ranks: Vec<Vec<Option<AxisValue>>>,
}

impl KeyOrder {
    /// Collects and orders the values of each dimension over `records`.
    pub(crate) fn new<'a>(dims: &[String], records: impl Iterator<Item = &'a Record> + Clone) -> Self {
        let ranks = dims
            .iter()
            .map(|dim| {
                let mut seen: Vec<Option<AxisValue>> = Vec::new();
                for r in records.clone() {
                    let v = r.dim(dim);
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                // Stable sort: strings compare equal to each other, keeping appearance order.
                seen.sort_by(class_cmp);
                seen
            })
            .collect();
        KeyOrder { ranks }
    }

    /// Compares two keys dimension by dimension using the collected ranks.
    pub(crate) fn cmp(&self, a: &Key, b: &Key) -> Ordering {
        for ((ra, rb), seen) in a.iter().zip(b).zip(&self.ranks) {
            let pos = |v: &Option<AxisValue>| seen.iter().position(|s| s == v);
            match pos(ra).cmp(&pos(rb)) {
                Ordering::Equal => continue,
                other => return other,
            }
        }
        Ordering::Equal
    }

    /// Sorts and de-duplicates keys.
    pub(crate) fn sort(&self, keys: &mut Vec<Key>) {
        keys.sort_by(|a, b| self.cmp(a, b));
        keys.dedup();
    }
}

fn class_cmp(a: &Option<AxisValue>, b: &Option<AxisValue>) -> Ordering {
    let class = |v: &Option<AxisValue>| match v {
        None => 0,
        Some(AxisValue::Str(_)) => 2,
        Some(_) => 1,
    };
    match class(a).cmp(&class(b)) {
        Ordering::Equal => match (a, b) {
            (Some(x), Some(y)) if x.as_f64().is_some() => x.cmp(y),
            _ => Ordering::Equal,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(label: &str, axes: &[(&str, AxisValue)]) -> Record {
        Record {
            source: "s".into(),
            label: label.into(),
            axes: axes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            metrics: BTreeMap::new(),
            replicates: None,
        }
    }

    #[test]
    fn axis_values_order_numerically_and_mix_int_float() {
        let mut v = [
            AxisValue::from("b"),
            AxisValue::Int(250),
            AxisValue::Float(50.0),
            AxisValue::Int(10),
            AxisValue::from("a"),
        ];
        v.sort();
        let shown: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(shown, ["10", "50", "250", "a", "b"]);
        assert_eq!(AxisValue::Int(50), AxisValue::Float(50.0));
    }

    /// Integers past 2^53 beside floats, zeros of both signs, fractions, infinities and NaNs: the
    /// order is transitive over every triple (through f64 it was not: a sort may panic on that).
    #[test]
    fn mixed_axis_values_order_transitively() {
        let big = 1i64 << 53;
        let v = [
            AxisValue::Int(big),
            AxisValue::Int(big + 1),
            AxisValue::Float(big as f64),
            AxisValue::Float(big as f64 + 2.0),
            AxisValue::Int(0),
            AxisValue::Float(0.0),
            AxisValue::Float(-0.0),
            AxisValue::Float(-2.5),
            AxisValue::Int(-2),
            AxisValue::Int(-3),
            AxisValue::Int(i64::MAX),
            AxisValue::Int(i64::MIN),
            AxisValue::Float(9.3e18),
            AxisValue::Float(-9.3e18),
            AxisValue::Float(f64::INFINITY),
            AxisValue::Float(f64::NEG_INFINITY),
            AxisValue::Float(f64::NAN),
            AxisValue::Float(-f64::NAN),
        ];
        for a in &v {
            for b in &v {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} {b}");
                for c in &v {
                    if a <= b && b <= c {
                        assert!(a <= c, "{a} <= {b} <= {c}");
                    }
                }
            }
        }
        assert!(
            AxisValue::Int(big) < AxisValue::Int(big + 1) && AxisValue::Int(big + 1) > AxisValue::Float(big as f64)
        );
        assert_eq!(AxisValue::Int(0), AxisValue::Float(-0.0));
        assert!(AxisValue::Float(-2.5) < AxisValue::Int(-2) && AxisValue::Float(-2.5) > AxisValue::Int(-3));
        assert!(AxisValue::Int(i64::MAX) < AxisValue::Float(9.3e18));
    }

    #[test]
    fn axis_values_deserialize_untagged() {
        let r: Record = serde_json::from_str(
            r#"{"source":"probe_cf","label":"N_cf","axes":{"k":250,"p":0.5,"target":"fashion"},"metrics":{"top1":71.5}}"#,
        )
        .unwrap();
        assert_eq!(r.axes["k"], AxisValue::Int(250));
        assert!(matches!(r.axes["p"], AxisValue::Float(_)));
        assert_eq!(r.axes["target"].to_string(), "fashion");
    }

    #[test]
    fn replicates_merge_into_one_record_per_cell() {
        let mut recs = Vec::new();
        for (r, v) in [(0, 80.0), (1, 82.0), (2, 81.0)] {
            let mut rec = rec("N_cf", &[("k", AxisValue::Int(10)), ("replicate", AxisValue::Int(r))]);
            rec.metrics.insert("value".into(), v);
            recs.push(rec);
        }
        let mut pre = rec("N_pre", &[("replicate", AxisValue::Int(0))]);
        pre.metrics.insert("value".into(), 70.0);
        recs.push(pre);
        let out = aggregate_replicates(recs.clone(), "value", &[], "t").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].label, "N_cf");
        assert!(!out[0].axes.contains_key("replicate"));
        let s = out[0].replicates.as_ref().unwrap();
        assert_eq!((s.n, s.mean, s.values.clone()), (3, 81.0, vec![80.0, 82.0, 81.0]));
        assert_eq!(out[1].replicates.as_ref().unwrap().n, 1);
        // A table by replicate keeps every record.
        assert_eq!(aggregate_replicates(recs.clone(), "value", &["replicate".into()], "t").unwrap().len(), 4);
        // One replicate gathered twice is refused, not counted as two.
        let twice = [recs[0].clone(), recs[0].clone()].to_vec();
        assert!(matches!(
            aggregate_replicates(twice, "value", &[], "t"),
            Err(crate::report::ReportError::Duplicate { .. })
        ));
    }

    #[test]
    fn key_order_numbers_numeric_strings_by_appearance_missing_first() {
        let dims = vec![SOURCE_DIM.to_string(), "k".to_string()];
        let recs = [
            rec("N_cf", &[("k", AxisValue::Int(250))]),
            rec("N_pre", &[]),
            rec("N_cf", &[("k", AxisValue::Int(10))]),
            rec("N_cf", &[("k", AxisValue::Int(50))]),
            rec("N_cf", &[]),
        ];
        let order = KeyOrder::new(&dims, recs.iter());
        let mut keys: Vec<Key> = recs.iter().map(|r| key_of(r, &dims)).collect();
        order.sort(&mut keys);
        let labels: Vec<String> = keys.iter().map(|k| key_label(&dims, k)).collect();
        assert_eq!(labels, ["N_cf", "N_cf k=10", "N_cf k=50", "N_cf k=250", "N_pre"]);
    }
}
