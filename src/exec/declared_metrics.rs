//! An op keeps to the metrics it declares: every name it writes is one of its `metrics` (a
//! table, plot or claim may name only those, checked before anything runs), and every one it
//! declares as always written is written (a table may count on those). Checked before a result is
//! published, so an op that breaks its declaration fails where the fault is, not in a table
//! stages later or, worse, by a metric a table can never name.

use std::path::Path;

use serde_json::Value as Json;

use crate::artifact::Metrics;
use crate::ops::{Kind, Op, OpError, Written};

/// Checks each metrics output in `staging` of an instance of `op` with these parameters.
pub fn check(op: &dyn Op, params: &Json, staging: &Path) -> Result<(), OpError> {
    let declared = op.metric_names();
    for output in op.output_names(params) {
        if op.output_kind(params, &output) != Some(Kind::Metrics) {
            continue;
        }
        let written = Metrics::load(&staging.join(&output))?;
        let undeclared: Vec<&str> =
            written.values.keys().map(String::as_str).filter(|name| !declared.contains(name)).collect();
        // An op that declares no names (a `command`: its program's) may write any.
        let what = if !declared.is_empty() && !undeclared.is_empty() {
            format!("{} not among its metric names ({})", undeclared.join(", "), declared.join(", "))
        } else if let Some(missing) =
            op.metrics().iter().find(|m| m.written == Written::Always && !written.values.contains_key(m.name))
        {
            format!("`{}` missing, though every run of it writes that", missing.name)
        } else {
            continue;
        };
        return Err(OpError::UndeclaredMetrics { op: op.name(), output, what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn write(dir: &Path, names: &[&str]) {
        let values: BTreeMap<String, f64> = names.iter().map(|n| (n.to_string(), 1.0)).collect();
        std::fs::create_dir_all(dir.join("metrics")).unwrap();
        Metrics { values, details: Json::Null }.save(&dir.join("metrics")).unwrap();
    }

    /// A probe writing its declared names passes; a name outside them and a missing always-written
    /// one each fail, naming the op, the output and the name; a command writes whatever it likes.
    #[test]
    fn metrics_outside_the_declaration_fail_the_stage() {
        let probe = crate::ops::find("linear_probe").unwrap();
        let params = Json::Null;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &["top1", "train_top1"]);
        assert!(check(probe, &params, dir.path()).is_ok());
        write(dir.path(), &["top1", "train_top1", "top_1"]);
        let e = check(probe, &params, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("op linear_probe wrote metrics its declaration does not allow in `metrics`: top_1 not among"),
            "{e}"
        );
        write(dir.path(), &["train_top1"]);
        let e = check(probe, &params, dir.path()).unwrap_err().to_string();
        assert!(e.contains("`top1` missing, though every run of it writes that"), "{e}");
        let command = crate::ops::find("command").unwrap();
        let declared = serde_json::json!({"argv": ["true"], "outputs": {"metrics": "metrics"}});
        write(dir.path(), &["anything"]);
        assert!(check(command, &declared, dir.path()).is_ok());
    }
}
