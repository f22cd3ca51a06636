//! `[executor]`: where an experiment's instances run by default (`local`, `processes` or `slurm`) and the
//! cluster-wide knobs. Command-line flags of `cfrun run` override each field. Like resources,
//! none of this is part of any recipe key.

use super::error::ConfigError;
use super::messages::{type_error, unknown_key};
use super::resources::{count, positive};
use super::source::{Entry, Node, NodeValue, Origin, SourceFile};

/// The top-level table name.
pub const EXECUTOR_TABLE: &str = "executor";

const FIELDS: &[&str] = &[
    "kind",
    "max_jobs",
    "partition",
    "account",
    "qos",
    "sbatch_args",
    "retries",
    "in_driver",
    "arrays",
    "poll_max",
    "queue_patience",
];

/// Most resubmissions of one job (`retries`, `--retries`).
pub const MAX_RETRIES: u32 = 100;

/// What `poll_max` may be: between a busy loop and a day, which `Duration` holds.
pub const POLL_MAX_VALID: &str = "a number of seconds from 0.01 to 86400";

/// Whether `seconds` is a valid `poll_max` ([`POLL_MAX_VALID`]).
pub fn poll_max_ok(seconds: f64) -> bool {
    (0.01..=86_400.0).contains(&seconds)
}

/// What `queue_patience` may be: from a second to a week.
pub const QUEUE_PATIENCE_VALID: &str = "a number of seconds from 1 to 604800";

/// Whether `seconds` is a valid `queue_patience` ([`QUEUE_PATIENCE_VALID`]).
pub fn queue_patience_ok(seconds: f64) -> bool {
    (1.0..=604_800.0).contains(&seconds)
}

/// Where instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    /// In this process, `--jobs` at a time (the default).
    #[default]
    Local,
    /// As Slurm jobs submitted with `sbatch`; the cache must be shared with the nodes.
    Slurm,
    /// As child processes of this one (`cfrun exec`), `--jobs` at a time: each with its own
    /// memory, and on a GPU its own CUDA context.
    Processes,
}

/// The `[executor]` table; `None` and empty fields keep the built-in defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutorSettings {
    /// `local`, `slurm` or `processes`.
    pub kind: Option<ExecutorKind>,
    /// Jobs submitted and not yet finished, at most.
    pub max_jobs: Option<u32>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// Further `sbatch` arguments, passed as written.
    pub sbatch_args: Vec<String>,
    /// Resubmissions of a job that died of NODE_FAIL, PREEMPTED, TIMEOUT or a kill signal.
    pub retries: Option<u32>,
    /// Ops that run in the driver instead of as jobs (replaces the default list). The names are
    /// checked against the ops when the plan is built (`graph::resolve`), which knows them.
    pub in_driver: Option<Vec<String>>,
    /// Where each name of `in_driver` was written, for that check's message.
    pub in_driver_origins: Vec<Origin>,
    /// Whether several ready instances of one stage go out as one job array.
    pub arrays: Option<bool>,
    /// The longest wait between two looks at the queue, in seconds.
    pub poll_max: Option<f64>,
    /// How long the queue may fail every look before the jobs it hides fail, in seconds.
    pub queue_patience: Option<f64>,
}

/// Parses the `[executor]` table; every problem is pushed to `errors`.
pub fn parse_executor(file: &SourceFile, entry: Option<&Entry>, errors: &mut Vec<ConfigError>) -> ExecutorSettings {
    let mut out = ExecutorSettings::default();
    let Some(entry) = entry else { return out };
    let Some(table) = entry.node.as_table() else {
        errors.push(type_error(file, &entry.node, EXECUTOR_TABLE, "a table"));
        return out;
    };
    for (key, e) in table {
        let field = format!("executor.{key}");
        let node = &e.node;
        match key.as_str() {
            "kind" => match node.as_str() {
                Some("local") => out.kind = Some(ExecutorKind::Local),
                Some("slurm") => out.kind = Some(ExecutorKind::Slurm),
                Some("processes") => out.kind = Some(ExecutorKind::Processes),
                _ => errors.push(type_error(file, node, &field, "\"local\", \"slurm\" or \"processes\"")),
            },
            "max_jobs" => out.max_jobs = positive(file, node, &field, errors),
            "retries" => {
                out.retries = count(file, node, &field, errors);
                // A job that keeps dying would be resubmitted for ever.
                if out.retries.is_some_and(|r| r > MAX_RETRIES) {
                    errors.push(type_error(file, node, &field, &format!("at most {MAX_RETRIES}")));
                    out.retries = None;
                }
            }
            "partition" => out.partition = string(file, node, &field, errors),
            "account" => out.account = string(file, node, &field, errors),
            "qos" => out.qos = string(file, node, &field, errors),
            "sbatch_args" => {
                out.sbatch_args = strings(file, node, &field, errors).unwrap_or_default();
                if let NodeValue::Array(items) = &node.value {
                    for (item, arg) in items.iter().zip(&out.sbatch_args) {
                        if let Some(why) = sbatch_arg_problem(arg) {
                            errors.push(type_error(file, item, &field, &why));
                        }
                    }
                }
            }
            "in_driver" => {
                out.in_driver = strings(file, node, &field, errors);
                if let NodeValue::Array(items) = &node.value {
                    out.in_driver_origins = items.iter().map(|i| i.origin.clone()).collect();
                }
            }
            "arrays" => match node.value {
                NodeValue::Bool(b) => out.arrays = Some(b),
                _ => errors.push(type_error(file, node, &field, "true or false")),
            },
            "poll_max" => out.poll_max = seconds(file, node, &field, (poll_max_ok, POLL_MAX_VALID), errors),
            "queue_patience" => {
                out.queue_patience = seconds(file, node, &field, (queue_patience_ok, QUEUE_PATIENCE_VALID), errors)
            }
            _ => errors.push(unknown_key(file, e, key, "field in [executor]", FIELDS)),
        }
    }
    out
}

/// A number of seconds that `valid.0` accepts; `valid.1` says which.
fn seconds(
    file: &SourceFile,
    node: &Node,
    field: &str,
    valid: (fn(f64) -> bool, &str),
    errors: &mut Vec<ConfigError>,
) -> Option<f64> {
    let value = match node.value {
        NodeValue::Int(i) => Some(i as f64),
        NodeValue::Float(f) => Some(f),
        _ => None,
    };
    let ok = value.filter(|v| (valid.0)(*v));
    if ok.is_none() {
        errors.push(type_error(file, node, field, valid.1));
    }
    ok
}

/// The sbatch options cfrun gives every job itself, long and short: given again, the later one
/// wins, and the driver would read the job's log, find its array tasks or run its script where
/// they are not.
const SBATCH_OWN: [(&str, &str, &str); 5] = [
    ("--output", "-o", "its log is CACHE/jobs/logs/<job>.log, which failures quote"),
    ("--error", "-e", "its log is CACHE/jobs/logs/<job>.log, which failures quote"),
    ("--job-name", "-J", "`cfrun:<stage>`, by which `squeue` shows it"),
    ("--array", "-a", "the instances of a stage ready together"),
    ("--wrap", "", "the `cfrun exec` that computes the instance"),
];

/// What is wrong with one of the `sbatch_args`, if anything: said as what it should be instead.
pub fn sbatch_arg_problem(arg: &str) -> Option<String> {
    if arg.trim().is_empty() {
        return Some("a non-empty sbatch option (an empty one reaches sbatch as a script's name)".into());
    }
    if arg == "--parsable" {
        return Some("an option other than --parsable, which cfrun gives every job to read its id".into());
    }
    let own = SBATCH_OWN.iter().find(|(long, short, _)| {
        let long_form = arg == *long || arg.starts_with(&format!("{long}="));
        let short_form = !short.is_empty() && arg.starts_with(short) && !arg.starts_with("--");
        long_form || short_form
    })?;
    Some(format!("an option other than {}, which cfrun sets for every job ({})", own.0, own.2))
}

fn string(file: &SourceFile, node: &Node, field: &str, errors: &mut Vec<ConfigError>) -> Option<String> {
    match node.as_str() {
        Some(s) if !s.trim().is_empty() => Some(s.to_string()),
        _ => {
            errors.push(type_error(file, node, field, "a non-empty string"));
            None
        }
    }
}

fn strings(file: &SourceFile, node: &Node, field: &str, errors: &mut Vec<ConfigError>) -> Option<Vec<String>> {
    let list = match &node.value {
        NodeValue::Array(items) => items.iter().map(|n| n.as_str().map(String::from)).collect::<Option<Vec<_>>>(),
        _ => None,
    };
    if list.is_none() {
        errors.push(type_error(file, node, field, "an array of strings"));
    }
    list
}

/// Merges command-line values over the file's: every `Some` / non-empty field of `over` wins.
pub fn merge(base: &ExecutorSettings, over: &ExecutorSettings) -> ExecutorSettings {
    let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
    ExecutorSettings {
        kind: over.kind.or(base.kind),
        max_jobs: over.max_jobs.or(base.max_jobs),
        partition: pick(&base.partition, &over.partition),
        account: pick(&base.account, &over.account),
        qos: pick(&base.qos, &over.qos),
        sbatch_args: base.sbatch_args.iter().chain(&over.sbatch_args).cloned().collect(),
        retries: over.retries.or(base.retries),
        in_driver: over.in_driver.clone().or_else(|| base.in_driver.clone()),
        in_driver_origins: if over.in_driver.is_some() { &over.in_driver_origins } else { &base.in_driver_origins }
            .clone(),
        arrays: over.arrays.or(base.arrays),
        poll_max: over.poll_max.or(base.poll_max),
        queue_patience: over.queue_patience.or(base.queue_patience),
    }
}

/// The user's defaults: the `[executor]` table of `$CFRUN_CONFIG`, else of
/// `$XDG_CONFIG_HOME/cfrun/config.toml` (`~/.config/cfrun/config.toml`). A missing default file
/// is no defaults; a broken one, or a `$CFRUN_CONFIG` naming no file, is an error, like a broken
/// experiment file.
pub fn user_defaults() -> Result<ExecutorSettings, ConfigError> {
    let (path, what) = match std::env::var_os("CFRUN_CONFIG") {
        // Named on purpose: a path that is not there is a mistake, not "no defaults".
        Some(p) => (std::path::PathBuf::from(p), "the user configuration named by CFRUN_CONFIG,"),
        None => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")));
            match base {
                Some(b) => {
                    let path = b.join("cfrun").join("config.toml");
                    if !path.exists() {
                        return Ok(ExecutorSettings::default());
                    }
                    (path, "the user configuration")
                }
                None => return Ok(ExecutorSettings::default()),
            }
        }
    };
    let file = SourceFile::read_as(&path, what)?;
    let doc = super::source::parse_document(&file)?;
    let mut errors = Vec::new();
    for (key, entry) in &doc {
        if key != EXECUTOR_TABLE {
            errors.push(unknown_key(&file, entry, key, "table in the user configuration", &[EXECUTOR_TABLE]));
        }
    }
    let settings = parse_executor(&file, doc.get(EXECUTOR_TABLE), &mut errors);
    ConfigError::collect(errors)?;
    // A file outside the experiment that changes where stages run must not do so unseen.
    if settings != ExecutorSettings::default() {
        let set: Vec<&str> = match doc.get(EXECUTOR_TABLE).map(|e| &e.node.value) {
            Some(NodeValue::Table(t)) => t.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        tracing::info!("executor defaults from the user configuration {}: {}", path.display(), set.join(", "));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Experiment;

    const TEXT: &str = "[experiment]\nname = \"e\"\n[executor]\nkind = \"slurm\"\nmax_jobs = 10\n\
                        sbatch_args = [\"--constraint=a100\"]\n[stages.s]\nop = \"dataset\"\nname = \"synthetic\"\n";

    fn load(text: &str, sets: &[&str]) -> Result<Experiment, ConfigError> {
        let file = SourceFile::from_text(std::path::Path::new("e.toml"), text.to_string());
        Experiment::parse(file, &sets.iter().map(|s| s.parse().unwrap()).collect::<Vec<_>>())
    }

    /// Options cfrun gives every job, long, short or with their value attached, and empty ones,
    /// are refused at the item in the file; others pass.
    #[test]
    fn sbatch_options_cfrun_sets_itself_are_refused() {
        for own in [
            "--output=x.log",
            "--output",
            "-o",
            "-ox.log",
            "--error=e",
            "-J",
            "--job-name=n",
            "--array=0-3",
            "--wrap=ls",
            "--parsable",
            "",
            " ",
        ] {
            assert!(sbatch_arg_problem(own).is_some(), "{own:?} accepted");
        }
        for fine in ["--constraint=a100", "--exclusive", "--comment=mine", "--open-mode=append", "-N1", "--gres=gpu:1"]
        {
            assert_eq!(sbatch_arg_problem(fine), None, "{fine:?}");
        }
        let text = TEXT.replace("[\"--constraint=a100\"]", "[\"--exclusive\", \"--output=mine.log\"]");
        let e = load(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("`executor.sbatch_args` must be an option other than --output, which cfrun sets"), "{e}");
        assert!(e.contains("found \"--output=mine.log\""), "{e}");
    }

    #[test]
    fn the_table_and_set_and_flags_merge_in_order() {
        let e = load(TEXT, &["executor.retries=5"]).unwrap();
        assert_eq!(e.executor.kind, Some(ExecutorKind::Slurm));
        assert_eq!((e.executor.max_jobs, e.executor.retries), (Some(10), Some(5)));
        let flags =
            ExecutorSettings { max_jobs: Some(3), sbatch_args: vec!["--exclusive".into()], ..Default::default() };
        let m = merge(&e.executor, &flags);
        assert_eq!(m.max_jobs, Some(3));
        assert_eq!(m.sbatch_args, ["--constraint=a100", "--exclusive"]);
        assert_eq!(m.kind, Some(ExecutorKind::Slurm));
    }

    #[test]
    fn set_may_create_the_executor_table_but_not_a_stage() {
        let bare = TEXT.split("[executor]").next().unwrap().to_string() + "[stages.s]\nop = \"dataset\"\n";
        let e = load(&bare, &["executor.kind=slurm", "stages.s.resources.cpus=4"]).unwrap();
        assert_eq!(e.executor.kind, Some(ExecutorKind::Slurm));
        assert!(load(&bare, &["stages.typo.resources.cpus=4"]).is_err());
        assert!(load(&bare, &["executor.kind=pbs"]).is_err());
    }
}
