//! `[stages.NAME.resources]`: what one stage asks of a cluster (CPUs, memory, GPUs, time limit,
//! whether it runs in the driver). Every field is optional and overrides the op's default.
//! Resources say where and how a stage runs, never what it computes, so they are not part of the
//! recipe key: the stage's params never see them (see `graph::resolve`).

use super::error::ConfigError;
use super::messages::{type_error, unknown_key};
use super::source::{Entry, Node, NodeValue, SourceFile};

/// The stage field that holds resources.
pub const RESOURCES_FIELD: &str = "resources";

const FIELDS: &[&str] = &["cpus", "mem", "gpus", "time", "in_driver"];

/// A stage's resource overrides; `None` keeps the op's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceOverrides {
    /// CPUs per task (`--cpus-per-task`).
    pub cpus: Option<u32>,
    /// Memory in MiB (`--mem`).
    pub mem_mb: Option<u64>,
    /// GPUs (`--gres=gpu:N`), when the run uses a GPU device.
    pub gpus: Option<u32>,
    /// Time limit in minutes (`--time`).
    pub time_min: Option<u32>,
    /// Run in the driver process instead of as a job.
    pub in_driver: Option<bool>,
}

/// Parses `[stages.NAME.resources]`; every problem is pushed to `errors`.
pub fn parse_resources(
    file: &SourceFile,
    stage: &str,
    entry: &Entry,
    errors: &mut Vec<ConfigError>,
) -> ResourceOverrides {
    let mut out = ResourceOverrides::default();
    let Some(table) = entry.node.as_table() else {
        errors.push(type_error(file, &entry.node, &format!("stages.{stage}.resources"), "a table"));
        return out;
    };
    for (key, e) in table {
        let field = format!("stages.{stage}.resources.{key}");
        let node = &e.node;
        match key.as_str() {
            "cpus" => out.cpus = positive(file, node, &field, errors),
            "gpus" => out.gpus = count(file, node, &field, errors),
            "mem" => out.mem_mb = memory_mb(file, node, &field, errors),
            "time" => out.time_min = minutes(file, node, &field, errors),
            "in_driver" => match node.value {
                NodeValue::Bool(b) => out.in_driver = Some(b),
                _ => errors.push(type_error(file, node, &field, "true or false")),
            },
            _ => errors.push(unknown_key(file, e, key, "field in a stage's resources", FIELDS)),
        }
    }
    out
}

fn int_in(node: &Node, min: i64) -> Option<u32> {
    match node.value {
        NodeValue::Int(i) if i >= min && i <= i64::from(u32::MAX) => Some(i as u32),
        _ => None,
    }
}

/// A positive integer (CPUs, in-flight limits).
pub(super) fn positive(file: &SourceFile, node: &Node, field: &str, errors: &mut Vec<ConfigError>) -> Option<u32> {
    let v = int_in(node, 1);
    if v.is_none() {
        errors.push(type_error(file, node, field, "a positive integer"));
    }
    v
}

/// A non-negative integer (GPUs, retries).
pub(super) fn count(file: &SourceFile, node: &Node, field: &str, errors: &mut Vec<ConfigError>) -> Option<u32> {
    let v = int_in(node, 0);
    if v.is_none() {
        errors.push(type_error(file, node, field, "a non-negative integer"));
    }
    v
}

fn memory_mb(file: &SourceFile, node: &Node, field: &str, errors: &mut Vec<ConfigError>) -> Option<u64> {
    let parsed = match &node.value {
        NodeValue::Int(i) if *i > 0 => Some(*i as u64),
        NodeValue::Str(s) => parse_memory(s),
        _ => None,
    };
    if parsed.is_none() {
        errors.push(type_error(file, node, field, "a size like \"512M\", \"16G\" or a number of MiB"));
    }
    parsed
}

fn minutes(file: &SourceFile, node: &Node, field: &str, errors: &mut Vec<ConfigError>) -> Option<u32> {
    let parsed = match &node.value {
        NodeValue::Int(i) if *i > 0 && *i <= i64::from(u32::MAX) => Some(*i as u32),
        NodeValue::Str(s) => parse_time(s),
        _ => None,
    };
    if parsed.is_none() {
        errors.push(type_error(file, node, field, "a time like \"30\" (minutes), \"2:00:00\" or \"1-12:00:00\""));
    }
    parsed
}

/// `512M`, `16G`, `1T` or a bare number of MiB.
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => t.split_at(at),
        None => (t, ""),
    };
    let n: u64 = digits.parse().ok().filter(|&n| n > 0)?;
    let scale = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 1,
        "G" | "GB" | "GIB" => 1024,
        "T" | "TB" | "TIB" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Slurm's time forms: `MM`, `H:MM:SS`, `D-HH:MM:SS`, `D-HH`; returns whole minutes (at least 1).
pub fn parse_time(text: &str) -> Option<u32> {
    let t = text.trim();
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, t),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse::<u64>().ok()).collect::<Option<_>>()?;
    // Checked: a huge count must be refused, not wrapped to a short limit.
    let hms = |h: u64, m: u64, s: u64| h.checked_mul(3600)?.checked_add(m.checked_mul(60)?)?.checked_add(s);
    let seconds = match (t.contains('-'), parts.as_slice()) {
        (false, [m]) => hms(0, *m, 0),
        (true, [h]) => hms(*h, 0, 0),
        (_, [h, m]) if t.contains('-') => hms(*h, *m, 0),
        (_, [m, s]) => hms(0, *m, *s),
        (_, [h, m, s]) => hms(*h, *m, *s),
        _ => return None,
    }?;
    let total = days.checked_mul(86_400)?.checked_add(seconds)?;
    (total > 0).then(|| u32::try_from(total.div_ceil(60)).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Some(512));
        assert_eq!(parse_memory("16G"), Some(16 * 1024));
        assert_eq!(parse_memory("2048"), Some(2048));
        assert_eq!(parse_memory("1t"), Some(1024 * 1024));
        assert_eq!(parse_memory("0G"), None);
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(parse_memory("4X"), None);
    }

    #[test]
    fn slurm_time_forms() {
        assert_eq!(parse_time("30"), Some(30));
        assert_eq!(parse_time("2:00:00"), Some(120));
        assert_eq!(parse_time("1-12:00:00"), Some(36 * 60));
        assert_eq!(parse_time("1-2"), Some(26 * 60));
        assert_eq!(parse_time("0:30"), Some(1));
        // Too long for any counter: refused, not wrapped to a minute.
        assert_eq!(parse_time("307445734561825861"), None);
        assert_eq!(parse_time("213503982334601-0"), None);
        assert_eq!(parse_time("0"), None);
        assert_eq!(parse_time("soon"), None);
    }
}
