//! Environment probes: each distinct command line runs once per process, side by side with the
//! other stages' probes, at most [`MAX_PROBES`] of them. Every probe runs before anything else can
//! start, so once one has taken its whole timeout the probes not yet started are not run: an audit
//! saw a sweep of 3 values with a hanging probe take 3 min before its exit 2, each probe its own
//! 60 s, so 256 values would have held the plan for over four hours.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::child::{self, ProbeError, PROBE_TIMEOUT};

/// Most distinct environment probes one process runs. A probe with a placeholder runs once per
/// sweep value before anything else can start (`status` included), each up to its timeout: a
/// long axis would hold the plan for hours.
pub const MAX_PROBES: usize = 256;

/// Why an environment probe gave no answer, each with the message naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeFailure {
    /// The plan has probed [`MAX_PROBES`] others already.
    #[error("{0}")]
    TooMany(String),
    /// It failed or printed too much.
    #[error("{0}")]
    Failed(String),
    /// It ran for the whole time a probe is given.
    #[error("{0}")]
    TimedOut(String),
    /// Not run: another probe of the plan took its whole timeout first.
    #[error("{0}")]
    NotRun(String),
}

/// A probe's answer, set once by whichever caller runs it.
type Answer = Arc<OnceLock<Result<String, ProbeFailure>>>;

/// The probes of one process, each with its answer once it has one.
#[derive(Default)]
struct Table {
    cells: Mutex<BTreeMap<Vec<String>, Answer>>,
    /// The first probe that took its whole timeout.
    timed_out: OnceLock<String>,
}

impl Table {
    /// `argv`'s answer, from `run` the first time it is asked for. Different probes run side by
    /// side (the table is locked only to find a probe's cell); callers of one probe wait for it.
    fn probe(
        &self,
        argv: &[String],
        run: impl FnOnce(&[String]) -> Result<String, ProbeError>,
    ) -> Result<String, ProbeFailure> {
        let shown = argv.join(" ");
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            if cells.len() >= MAX_PROBES && !cells.contains_key(argv) {
                return Err(ProbeFailure::TooMany(format!(
                    "`env_probe` makes more than {MAX_PROBES} distinct command lines in this plan (`{shown}` is one \
                     too many), and each runs before anything starts"
                )));
            }
            Arc::clone(cells.entry(argv.to_vec()).or_default())
        };
        let answer = cell.get_or_init(|| {
            if let Some(first) = self.timed_out.get() {
                return Err(ProbeFailure::NotRun(format!(
                    "`{shown}` was not run: `{first}` took the whole {} s a probe is given, and every probe holds \
                     the plan until it ends",
                    PROBE_TIMEOUT.as_secs()
                )));
            }
            run(argv).map_err(|e| match e {
                ProbeError::TimedOut(why) => {
                    let _ = self.timed_out.set(shown.clone());
                    ProbeFailure::TimedOut(why)
                }
                ProbeError::Failed(why) => ProbeFailure::Failed(why),
            })
        });
        answer.clone()
    }
}

/// The answer of the environment probe `argv`, run once per process.
pub fn probe_env(argv: &[String]) -> Result<String, ProbeFailure> {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default).probe(argv, |argv| child::probe(argv, true))
}

/// Runs the probe `argv` afresh (not from the table) and says how its answer differs from
/// `hashed`, the answer the stage's key was made from, if it does. The plan's answer may be hours
/// old, or from another machine (a Slurm login node): a result computed in an environment other
/// than the one its key names must not be published under that key.
pub fn recheck(argv: &[String], hashed: &str, when: &str) -> Result<(), String> {
    let now = child::probe(argv, false).map_err(|e| format!("`env_probe` {when}: {e}"))?;
    if now == hashed {
        return Ok(());
    }
    let (then_lines, now_lines): (Vec<&str>, Vec<&str>) = (hashed.lines().collect(), now.lines().collect());
    let line = (0..then_lines.len().max(now_lines.len())).find(|&i| then_lines.get(i) != now_lines.get(i)).unwrap_or(0);
    // The probe's own text, cut and with what could move a terminal's cursor made visible.
    let shown =
        |l: Option<&&str>| l.map_or("nothing".to_string(), |l| format!("`{}`", crate::human::printable_cut(l, 120)));
    Err(format!(
        "the environment changed since the plan probed it: `{}` {when} printed {} on line {}, where the stage's key \
         has {}; nothing was published; run again to plan with this environment",
        argv.join(" "),
        shown(now_lines.get(line)),
        line + 1,
        shown(then_lines.get(line)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn argv(words: &str) -> Vec<String> {
        words.split(' ').map(String::from).collect()
    }

    /// Each probe runs once; after one times out, the ones not yet run are refused at once,
    /// naming it, while answers already had stay as they were.
    #[test]
    fn probes_run_once_and_none_start_after_one_timed_out() {
        let table = Table::default();
        let runs = Cell::new(0);
        let answer = |text: &'static str| {
            let runs = &runs;
            move |_: &[String]| {
                runs.set(runs.get() + 1);
                Ok(text.to_string())
            }
        };
        assert_eq!(table.probe(&argv("python -V"), answer("3.12\n")), Ok("3.12\n".to_string()));
        assert_eq!(table.probe(&argv("python -V"), answer("other\n")), Ok("3.12\n".to_string()));
        assert_eq!(runs.get(), 1);
        let hung = table.probe(&argv("sleep 1"), |_| Err(ProbeError::TimedOut("`sleep 1` did not finish".into())));
        assert_eq!(hung, Err(ProbeFailure::TimedOut("`sleep 1` did not finish".into())));
        let next = table.probe(&argv("sleep 2"), answer("never\n"));
        let Err(ProbeFailure::NotRun(why)) = next else { panic!("{next:?}") };
        assert!(why.starts_with("`sleep 2` was not run: `sleep 1` took the whole 60 s"), "{why}");
        assert_eq!(runs.get(), 1, "not run");
        assert_eq!(table.probe(&argv("python -V"), answer("other\n")), Ok("3.12\n".to_string()));
        // A probe that fails quickly stops nothing.
        let table = Table::default();
        let failed = table.probe(&argv("false"), |_| Err(ProbeError::Failed("`false` exited 1".into())));
        assert_eq!(failed, Err(ProbeFailure::Failed("`false` exited 1".into())));
        assert_eq!(table.probe(&argv("echo 1"), answer("1\n")), Ok("1\n".to_string()));
    }

    #[test]
    fn a_plan_may_not_probe_more_than_the_most() {
        let table = Table::default();
        for i in 0..MAX_PROBES {
            table.probe(&argv(&format!("echo {i}")), |_| Ok(String::new())).unwrap();
        }
        let again = table.probe(&argv("echo 0"), |_| unreachable!("answered"));
        assert_eq!(again, Ok(String::new()));
        let Err(ProbeFailure::TooMany(why)) = table.probe(&argv("echo more"), |_| Ok(String::new())) else {
            panic!("not refused")
        };
        assert!(why.contains("(`echo more` is one too many)"), "{why}");
    }
}
