//! How many decimals a table shows: one count for every metric, or one per metric
//! (`precision = { top1 = 1, nmi = 3 }`), since accuracies in points and NMI in [0, 1] share
//! tables and no single count suits both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Decimals of a metric that a per-metric table does not name.
pub const DEFAULT_DECIMALS: usize = 1;

/// The most decimals a table shows (the CSV keeps every digit).
pub const MAX_DECIMALS: usize = 6;

/// Decimals of a table's cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Precision {
    /// The same for every metric.
    All(#[schemars(range(max = 6))] usize),
    /// By metric name; a metric not named gets [`DEFAULT_DECIMALS`].
    PerMetric(BTreeMap<String, usize>),
}

impl Default for Precision {
    fn default() -> Self {
        Precision::All(DEFAULT_DECIMALS)
    }
}

impl Precision {
    /// Decimals of `metric`'s cells (of a table's cells, where they name no metric).
    pub fn of(&self, metric: Option<&str>) -> usize {
        match self {
            Precision::All(n) => *n,
            Precision::PerMetric(by) => metric.and_then(|m| by.get(m)).copied().unwrap_or(DEFAULT_DECIMALS),
        }
    }

    /// The most decimals any metric gets: for a number that names no metric.
    pub fn most(&self) -> usize {
        match self {
            Precision::All(n) => *n,
            Precision::PerMetric(by) => {
                by.values().copied().chain([DEFAULT_DECIMALS]).max().unwrap_or(DEFAULT_DECIMALS)
            }
        }
    }
}

/// Read by hand, not as serde's untagged enum, so that a wrong value says what would be valid
/// instead of "data did not match any variant".
impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Precision;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of decimals, or a table of them by metric (e.g. { top1 = 1, nmi = 3 })")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Precision, E> {
                usize::try_from(v).map(Precision::All).map_err(|_| E::custom(format!("{v} decimals is too many")))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Precision, A::Error> {
                let mut by = BTreeMap::new();
                while let Some((metric, decimals)) = map.next_entry::<String, usize>()? {
                    by.insert(metric, decimals);
                }
                Ok(Precision::PerMetric(by))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One count reads and writes as the plain number it always was, so a table's recipe key
    /// does not move; a table of counts reads as one.
    #[test]
    fn reads_a_number_or_a_table_and_writes_them_back_alike() {
        let all: Precision = serde_json::from_value(json!(3)).unwrap();
        assert_eq!(all, Precision::All(3));
        assert_eq!(serde_json::to_value(&all).unwrap(), json!(3));
        let by: Precision = serde_json::from_value(json!({"top1": 1, "nmi": 3})).unwrap();
        assert_eq!(serde_json::to_value(&by).unwrap(), json!({"nmi": 3, "top1": 1}));
        assert_eq!((by.of(Some("nmi")), by.of(Some("top1")), by.of(Some("ami")), by.of(None)), (3, 1, 1, 1));
        assert_eq!(by.most(), 3);
        for wrong in [json!(-1), json!(1.5), json!("2"), json!({"nmi": "3"})] {
            let err = serde_json::from_value::<Precision>(wrong.clone()).unwrap_err().to_string();
            assert!(err.contains("decimals") || err.contains("usize"), "{wrong}: {err}");
        }
    }
}
