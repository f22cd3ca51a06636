//! The run history of one experiment from the cache's `runs.jsonl`: one line per instance per
//! run, each naming its run. Lines from before runs were named are split where an instance name
//! repeats (two runs of disjoint parts read as one there).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::cache::records::{read_run_log, RunLogLine};

/// Runs kept for the page, newest last.
const MAX_RUNS: usize = 30;

/// One run of the experiment.
#[derive(Debug, Default)]
pub struct Run {
    /// Unix seconds at which its first instance began (a line is logged as an instance ends,
    /// with its wall time).
    pub start: f64,
    /// Unix seconds of its last log line.
    pub end: f64,
    /// Outcome (`ran`, `cached`, ...) to count.
    pub outcomes: BTreeMap<String, usize>,
    /// Seconds spent computing (the instances that ran).
    pub compute_seconds: f64,
    /// Failed or skipped instances with their errors (the first [`PROBLEMS_KEPT`], each error
    /// cut to [`PROBLEM_CHARS`]).
    pub problems: Vec<(String, String, String)>,
    /// How many instances failed or were skipped, `problems` or not.
    pub problem_count: usize,
    /// Its id, where the log names it.
    pub id: Option<String>,
    /// The targets of a run of part of the experiment (empty for the whole).
    pub targets: Vec<String>,
}

/// Most problems of one run the page lists: 500 failed instances of 30 runs, each error 8 KB,
/// made a 63 MB page (found by a review); `runs.jsonl` keeps them all.
pub const PROBLEMS_KEPT: usize = 50;
/// Characters of one problem's error the page shows.
pub const PROBLEM_CHARS: usize = 600;

/// The runs of `experiment` in `log` (oldest first, at most the last `MAX_RUNS`); also the last
/// log line of each instance.
pub fn read(log: &Path, experiment: &str) -> (Vec<Run>, BTreeMap<String, RunLogLine>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut last = BTreeMap::new();
    // A run names its targets in its first line only, and lines of runs side by side interleave.
    let mut targets_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mut entry in read_run_log(log) {
        if entry.experiment != experiment {
            continue;
        }
        // Moved out of the line, which `last` keeps: a copy per instance is what made an old
        // log of many targets take gigabytes here.
        let mut targets = std::mem::take(&mut entry.targets);
        if let (Some(id), false) = (&entry.run, targets.is_empty()) {
            targets_of.insert(id.clone(), std::mem::take(&mut targets));
        }
        // Logged when the instance ended: a one-stage run of 3 s read as begun at its end, 0.0 s long.
        let began =
            if entry.seconds.is_finite() && entry.seconds > 0.0 { entry.time - entry.seconds } else { entry.time };
        let new_run = match (runs.last(), &entry.run) {
            (None, _) => true,
            (Some(run), Some(id)) => run.id.as_ref() != Some(id),
            (Some(run), None) => run.id.is_some() || seen.contains(&entry.instance),
        };
        if new_run {
            if runs.len() == MAX_RUNS {
                runs.remove(0);
            }
            let targets = match &entry.run {
                Some(id) => targets_of.get(id).cloned().unwrap_or_default(),
                None => targets,
            };
            runs.push(Run { start: began, id: entry.run.clone(), targets, ..Run::default() });
            seen.clear();
        }
        seen.insert(entry.instance.clone());
        let run = runs.last_mut().expect("pushed above");
        run.end = run.end.max(entry.time);
        run.start = run.start.min(began);
        *run.outcomes.entry(entry.outcome.clone()).or_default() += 1;
        if entry.outcome == "ran" {
            run.compute_seconds += entry.seconds;
        }
        if let Some(err) = &entry.error {
            run.problem_count += 1;
            if run.problems.len() < PROBLEMS_KEPT {
                let err = crate::human::printable_cut(err, PROBLEM_CHARS);
                run.problems.push((entry.instance.clone(), entry.outcome.clone(), err));
            }
        }
        last.insert(entry.instance.clone(), entry);
    }
    (runs, last)
}

/// `2026-11-29 21:04:05 UTC` from Unix seconds (civil calendar, no time-zone database needed).
pub fn utc(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines that name their run are grouped by it: two runs of disjoint parts stay two, a run
    /// with no repeated instance after an old unnamed one starts its own, and a part says its
    /// targets.
    #[test]
    fn runs_split_by_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs.jsonl");
        let line = |inst: &str, run: Option<&str>, targets: &str| {
            let run = run.map_or(String::new(), |r| format!(r#","run":"{r}""#));
            let targets = if targets.is_empty() { String::new() } else { format!(r#","targets":["{targets}"]"#) };
            format!(
                r#"{{"time":1,"experiment":"e","instance":"{inst}","key":null,"outcome":"ran","seconds":0{run}{targets}}}"#
            )
        };
        let text = [
            line("old", None, ""),
            line("a", Some("r1"), "pa"),
            line("pa", Some("r1"), "pa"),
            line("b", Some("r2"), "pb"),
            line("pb", Some("r2"), "pb"),
            line("a", Some("r3"), ""),
        ]
        .join("\n");
        std::fs::write(&log, text).unwrap();
        let (runs, _) = read(&log, "e");
        let shape: Vec<(usize, Vec<String>)> = runs.iter().map(|r| (r.outcomes["ran"], r.targets.clone())).collect();
        assert_eq!(
            shape,
            [(1, vec![]), (2, vec!["pa".to_string()]), (2, vec!["pb".to_string()]), (1, vec![])],
            "{runs:?}"
        );

        // Since 2026-12-08 only a run's first line names its targets; two runs side by side
        // interleave, and each segment still says its run's.
        let text = [
            line("a", Some("r1"), "pa"),
            line("b", Some("r2"), "pb"),
            line("pa", Some("r1"), ""),
            line("pb", Some("r2"), ""),
        ]
        .join("\n");
        std::fs::write(&log, text).unwrap();
        let (runs, last) = read(&log, "e");
        let targets: Vec<Vec<String>> = runs.iter().map(|r| r.targets.clone()).collect();
        assert_eq!(targets, [["pa"], ["pb"], ["pa"], ["pb"]].map(|t| vec![t[0].to_string()]), "{runs:?}");
        assert!(last.values().all(|l| l.targets.is_empty()), "the kept lines hold no copy of the targets");
    }

    #[test]
    fn runs_split_where_an_instance_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs.jsonl");
        let line = |t: f64, inst: &str, outcome: &str| {
            format!(
                r#"{{"time":{t},"experiment":"e","instance":"{inst}","key":null,"outcome":"{outcome}","seconds":1.5}}"#
            )
        };
        let text =
            [line(1.0, "a", "ran"), line(2.0, "b", "ran"), line(3.0, "a", "cached"), line(4.0, "b", "ran")].join("\n");
        std::fs::write(&log, text + "\n{broken\n").unwrap();
        let (runs, last) = read(&log, "e");
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].outcomes["ran"], 2);
        assert_eq!(runs[1].outcomes["cached"], 1);
        assert_eq!(runs[0].compute_seconds, 3.0);
        // Each line is written as its instance ends: the run began 1.5 s before its first.
        assert_eq!((runs[0].start, runs[0].end), (-0.5, 2.0));
        assert_eq!((runs[1].start, runs[1].end), (1.5, 4.0));
        assert_eq!(last["a"].outcome, "cached");
        assert_eq!(utc(1_764_450_245.0), "2025-11-29 21:04:05 UTC");
    }

    /// A run's problems are all counted, its first [`PROBLEMS_KEPT`] kept, each error cut.
    #[test]
    fn a_run_keeps_its_first_problems_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs.jsonl");
        let error = "<".repeat(5000);
        let text: Vec<String> = (0..PROBLEMS_KEPT + 30)
            .map(|i| {
                format!(
                    r#"{{"time":1,"experiment":"e","instance":"s{i}","key":null,"outcome":"failed","seconds":0,"run":"r","error":"{error}"}}"#
                )
            })
            .collect();
        std::fs::write(&log, text.join("\n")).unwrap();
        let (runs, _) = read(&log, "e");
        assert_eq!((runs[0].problem_count, runs[0].problems.len()), (PROBLEMS_KEPT + 30, PROBLEMS_KEPT));
        let (_, _, kept) = &runs[0].problems[0];
        assert!(kept.chars().count() < PROBLEM_CHARS + 10 && kept.ends_with("… (cut)"), "{kept}");
    }
}
