//! Which observations a claim talks about: a selector maps a dimension (an axis name, or `source`
//! for the stage a metric came from) to a condition on its value.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// One measured value with its coordinates (the stage it came from and its sweep-axis values).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The stage that measured it, e.g. `probe_cf`.
    pub source: String,
    /// Its axis values, `replicate` included when the experiment has replicates.
    pub axes: BTreeMap<String, Json>,
    /// The metric's value.
    pub value: f64,
}

/// The dimension that names the stage an observation came from.
pub const SOURCE: &str = "source";

/// The axis that numbers replicates.
pub const REPLICATE: &str = "replicate";

/// A condition on one dimension's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equal to this value (numbers compare numerically: 50 equals 50.0).
    Equals(Json),
    /// Equal to one of these.
    OneOf(Vec<Json>),
    /// A number in `[min, max]` (either bound may be open).
    Range {
        /// Lower bound, inclusive.
        min: Option<f64>,
        /// Upper bound, inclusive.
        max: Option<f64>,
    },
}

/// Conditions that must all hold.
pub type Selector = BTreeMap<String, Condition>;

impl Condition {
    /// Reads a condition as written in TOML: a value, a list of values, or `{ min = .., max = .. }`.
    pub fn parse(value: &Json) -> Result<Condition, String> {
        match value {
            Json::Array(items) if items.is_empty() => Err("an empty list matches nothing".into()),
            Json::Array(items) => {
                if let Some(bad) = items.iter().find(|v| !is_scalar(v)) {
                    return Err(format!("list items must be strings or numbers, found {bad}"));
                }
                if let Some((i, twice)) =
                    items.iter().enumerate().find(|(i, v)| items[..*i].iter().any(|w| same_value(v, w)))
                {
                    return Err(format!("the list names {twice} twice (item {i}); list each value once"));
                }
                Ok(Condition::OneOf(items.clone()))
            }
            Json::Object(map) => {
                let mut min = None;
                let mut max = None;
                for (k, v) in map {
                    let n = v.as_f64().ok_or_else(|| format!("`{k}` must be a number, found {v}"))?;
                    match k.as_str() {
                        "min" => min = Some(n),
                        "max" => max = Some(n),
                        other => return Err(format!("unknown bound `{other}` (valid: min, max)")),
                    }
                }
                if min.is_none() && max.is_none() {
                    return Err("a range needs `min`, `max` or both".into());
                }
                Ok(Condition::Range { min, max })
            }
            v if is_scalar(v) => Ok(Condition::Equals(v.clone())),
            other => Err(format!("expected a value, a list or {{ min = .., max = .. }}, found {other}")),
        }
    }

    /// Whether `value` satisfies the condition.
    pub fn accepts(&self, value: &Json) -> bool {
        match self {
            Condition::Equals(want) => same_value(want, value),
            Condition::OneOf(list) => list.iter().any(|w| same_value(w, value)),
            Condition::Range { min, max } => {
                value.as_f64().is_some_and(|x| min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m))
            }
        }
    }

    /// The literal values the condition names (to check them against the values that exist).
    pub fn literals(&self) -> Vec<&Json> {
        match self {
            Condition::Equals(v) => vec![v],
            Condition::OneOf(list) => list.iter().collect(),
            Condition::Range { .. } => Vec::new(),
        }
    }

    /// Short text for reports: `250`, `fashion-mnist`, `25 or 50`, `>= 50`.
    pub fn describe(&self) -> String {
        match self {
            Condition::Equals(v) => text(v),
            Condition::OneOf(list) => list.iter().map(text).collect::<Vec<_>>().join(" or "),
            Condition::Range { min: Some(a), max: Some(b) } => format!("{a}..{b}"),
            Condition::Range { min: Some(a), max: None } => format!(">= {a}"),
            Condition::Range { min: None, max: Some(b) } => format!("<= {b}"),
            Condition::Range { min: None, max: None } => "any".into(),
        }
    }
}

/// Parses a selector table, naming the dimension at fault.
pub fn parse_selector(table: &BTreeMap<String, Json>) -> Result<Selector, (String, String)> {
    table.iter().map(|(dim, v)| Condition::parse(v).map(|c| (dim.clone(), c)).map_err(|e| (dim.clone(), e))).collect()
}

/// The value of `dim` for `obs`: its stage for [`SOURCE`], else its axis value.
pub fn dim_value(obs: &Observation, dim: &str) -> Option<Json> {
    if dim == SOURCE {
        Some(Json::String(obs.source.clone()))
    } else {
        obs.axes.get(dim).cloned()
    }
}

/// Whether `obs` satisfies every condition (a missing dimension fails its condition).
pub fn matches(obs: &Observation, sel: &Selector) -> bool {
    sel.iter().all(|(dim, c)| dim_value(obs, dim).is_some_and(|v| c.accepts(&v)))
}

/// Like [`matches()`], but a dimension the observation lacks passes: scopes (`where`, `each`) then
/// keep baselines that have no such axis (N_pre has no K) beside the series that do.
pub fn within(obs: &Observation, sel: &Selector) -> bool {
    sel.iter().all(|(dim, c)| dim_value(obs, dim).is_none_or(|v| c.accepts(&v)))
}

/// `k = 250, source = probe_cf` for reports.
pub fn describe(sel: &Selector) -> String {
    sel.iter().map(|(d, c)| condition_text(d, c)).collect::<Vec<_>>().join(", ")
}

/// `k = 250`, `target = mnist or fashion-mnist`, `p >= 50`.
pub fn condition_text(dim: &str, c: &Condition) -> String {
    match c {
        Condition::Range { .. } => format!("{dim} {}", c.describe()),
        _ => format!("{dim} = {}", c.describe()),
    }
}

fn is_scalar(v: &Json) -> bool {
    matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_))
}

/// Whether two axis values are one (numbers by value: 2 and 2.0 are one; "2" and 2 are not).
pub fn same_value(a: &Json, b: &Json) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A value as reports show it (strings without quotes).
pub fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_and_accept() {
        let eq = Condition::parse(&json!(50)).unwrap();
        assert!(eq.accepts(&json!(50.0)) && !eq.accepts(&json!(25)));
        let any = Condition::parse(&json!(["mnist", "animal-mnist"])).unwrap();
        assert!(any.accepts(&json!("mnist")) && !any.accepts(&json!("fashion-mnist")));
        let range = Condition::parse(&json!({"min": 50})).unwrap();
        assert!(range.accepts(&json!(75)) && range.accepts(&json!(50)) && !range.accepts(&json!(25)));
        assert!(!range.accepts(&json!("x")));
        assert_eq!(range.describe(), ">= 50");
        assert!(Condition::parse(&json!({"above": 3})).unwrap_err().contains("min, max"));
        assert!(Condition::parse(&json!([])).is_err());
        // A value listed twice (as 0 and 0.0 too) read `x = 0 or 0 or 1` in the verdicts.
        assert!(Condition::parse(&json!([0, 0.0, 1])).unwrap_err().contains("names 0.0 twice"));
    }
}
