//! The metrics an op declares, each with when it is written, in one list: what `cfrun ops`
//! shows, what a table, plot or claim may name before anything runs, what a table may count on
//! (a clash of cells is caught in the plan only for metrics every run writes), and what a
//! finished stage is checked against before its result is published.

/// When a declared metric is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// By every run, whatever its inputs.
    Always,
    /// When, and only when, this optional input slot is wired (`kmeans`'s NMI needs `truth`).
    WithInput(&'static str),
    /// By some runs only, depending on what the inputs hold; says which (checked in the plan
    /// where the inputs' facts tell, by [`crate::ops::Op::unwritten_metrics`]).
    Sometimes(&'static str),
}

/// One metric an op can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// The name tables, plots and claims read.
    pub name: &'static str,
    /// When it is written.
    pub written: Written,
}

impl MetricSpec {
    /// A metric every run writes.
    pub const fn always(name: &'static str) -> MetricSpec {
        MetricSpec { name, written: Written::Always }
    }

    /// A metric written when, and only when, the optional input `slot` is wired.
    pub const fn with_input(name: &'static str, slot: &'static str) -> MetricSpec {
        MetricSpec { name, written: Written::WithInput(slot) }
    }

    /// A metric some runs write, `when` saying which.
    pub const fn sometimes(name: &'static str, when: &'static str) -> MetricSpec {
        MetricSpec { name, written: Written::Sometimes(when) }
    }

    /// When it is written, in words (`cfrun ops`).
    pub fn when(&self) -> String {
        match self.written {
            Written::Always => "always".to_string(),
            Written::WithInput(slot) => format!("with input `{slot}`"),
            Written::Sometimes(when) => when.to_string(),
        }
    }
}

/// Whether every run writes `name`, or it needs an input that `wired` holds.
pub fn surely_written(metrics: &[MetricSpec], name: &str, wired: &[&str]) -> bool {
    metrics.iter().any(|m| {
        m.name == name
            && match m.written {
                Written::Always => true,
                Written::WithInput(slot) => wired.contains(&slot),
                Written::Sometimes(_) => false,
            }
    })
}

/// The input slot `name` needs that `wired` lacks, if any.
pub fn lacking_input(metrics: &[MetricSpec], name: &str, wired: &[&str]) -> Option<&'static str> {
    metrics.iter().find_map(|m| match m.written {
        Written::WithInput(slot) if m.name == name && !wired.contains(&slot) => Some(slot),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &[MetricSpec] = &[
        MetricSpec::always("inertia"),
        MetricSpec::with_input("nmi", "truth"),
        MetricSpec::sometimes("top5", "more than five classes"),
    ];

    /// Each kind of condition is read as declared: always, only beside its input, never surely.
    #[test]
    fn what_is_surely_written_follows_the_declaration() {
        assert!(surely_written(METRICS, "inertia", &[]));
        assert!(!surely_written(METRICS, "nmi", &["features"]));
        assert!(surely_written(METRICS, "nmi", &["features", "truth"]));
        assert!(!surely_written(METRICS, "top5", &["features", "truth"]));
        assert!(!surely_written(METRICS, "absent", &["truth"]));
        assert_eq!(lacking_input(METRICS, "nmi", &["features"]), Some("truth"));
        assert_eq!(lacking_input(METRICS, "nmi", &["truth"]), None);
        assert_eq!(lacking_input(METRICS, "top5", &[]), None);
        let shown: Vec<String> = METRICS.iter().map(MetricSpec::when).collect();
        assert_eq!(shown, ["always", "with input `truth`", "more than five classes"]);
    }
}
