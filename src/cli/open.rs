//! What every command opens first: the experiment file, checked, and the cache.

use std::path::Path;

use super::failure::Failure;
use super::Global;
use crate::cache::store::holds_nothing;
use crate::cache::{CacheError, Store};
use crate::config::Experiment;
use crate::exec::job::{jobs_dir_in, SpecError};
use crate::graph::Plan;

pub(super) fn load(file: &Path, g: &Global) -> Result<Plan, Failure> {
    let exp = Experiment::load(file, &g.set)?;
    Ok(Plan::build(exp)?)
}

/// Records this command's `--set` list for `plan`'s experiment before anything is computed, so
/// that a later `gc` of the file keeps what this run computes. A record that cannot be written
/// is said, not fatal: the run's results are sound, only that `gc` would not know them.
pub(super) fn remember_settings(store: &Store, file: &Path, plan: &Plan, g: &Global) {
    let settings = g.settings();
    // A run renamed by `--set experiment.name=...` is recorded under the file's own name too,
    // which is where `gc FILE` looks.
    let renamed = g.set.iter().any(|o| o.path == ["experiment", "name"]);
    let own = renamed.then(|| Experiment::load(file, &[]).ok().map(|e| e.name)).flatten();
    let names = std::iter::once(&plan.experiment.name).chain(own.as_ref().filter(|n| **n != plan.experiment.name));
    let math = crate::nn::math_switches::in_force();
    let remember =
        |name: &String| store.remember_settings(name, &settings).and_then(|()| store.remember_math(name, &math));
    if let Err(e) = names.into_iter().try_for_each(remember) {
        tracing::warn!(
            "could not record this run's --set and switches ({e}): a later `cfrun gc` of this file without the \
             same --set and switches would remove its results"
        );
    }
    if let Some(file) = warn_if_the_name_is_shared(store, file, &plan.experiment.name, &[]) {
        if let Err(e) = store.remember_experiment_file(&plan.experiment.name, &file) {
            tracing::debug!("could not record which file this run came from: {e}");
        }
    }
}

/// Warns when other files, still there, ran under `experiment`'s name too (those in `given`, the
/// other files of the same command, aside): they share its records, run history, report file and
/// what `gc` keeps. Returns `file` made canonical (`None` when it cannot be).
pub(super) fn warn_if_the_name_is_shared(
    store: &Store,
    file: &Path,
    experiment: &str,
    given: &[&Path],
) -> Option<std::path::PathBuf> {
    let here = std::fs::canonicalize(file).ok()?;
    let given: Vec<std::path::PathBuf> = given.iter().filter_map(|f| std::fs::canonicalize(f).ok()).collect();
    let others: Vec<String> = store
        .experiment_files(experiment)
        .into_iter()
        .rev()
        .filter(|f| *f != here && !given.contains(f) && f.is_file())
        .map(|f| crate::human::printable_path(&f))
        .collect();
    if !others.is_empty() {
        tracing::warn!(
            "experiment `{experiment}` was also run from {}: files that share an experiment name share its records, run \
             history and report, and `cfrun gc` of one removes what only another computed; give {} an \
             `[experiment] name` of its own",
            others.join(", "),
            crate::human::printable_path(file)
        );
    }
    Some(here)
}

pub(super) fn open_store(g: &Global) -> Result<Store, Failure> {
    require_cache_folder(&g.cache)?;
    Store::open(&g.cache).map_err(|e| opening_failed(g, e))
}

/// A cache that could not be opened: the command line's fault (exit 2, at `--cache`) when its
/// folder cannot be made or written, else a failure of the work.
fn opening_failed(g: &Global, e: CacheError) -> Failure {
    match e {
        CacheError::Io { path, source } if is_unusable_path(&source) => Failure::argument(
            "--cache",
            format!(
                "--cache {} cannot be used: {}: {source}; give a folder that can be created and written",
                g.cache.display(),
                path.display()
            ),
        ),
        e => Failure::runtime(e),
    }
}

/// Whether an I/O error on a path from the command line says that path cannot be made or
/// written (a read-only or missing parent, a file or a folder in the way): the command line's fault, exit 2,
/// not a failure of the work.
pub(super) fn is_unusable_path(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound, PermissionDenied, ReadOnlyFilesystem};
    matches!(e.kind(), PermissionDenied | ReadOnlyFilesystem | NotADirectory | IsADirectory | NotFound)
}

/// Opens the cache for a command that only reads it: a missing one is said to be empty, and is
/// not created.
pub(super) fn open_store_to_read(g: &Global) -> Result<Store, Failure> {
    require_cache_folder(&g.cache)?;
    if !g.cache.exists() {
        let shown = crate::human::printable_path(&g.cache);
        tracing::warn!("--cache {shown} does not exist: nothing is cached there (a run creates it)");
    } else if holds_nothing(&g.cache) {
        let shown = crate::human::printable_path(&g.cache);
        tracing::warn!("--cache {shown} is an empty folder: nothing is cached there (a run makes it a cache)");
    }
    Store::open_to_read(&g.cache).map_err(Failure::runtime)
}

/// Opens the cache for `cfrun exec`, which a waiting `gc` does not hold up (its driver may be
/// what that `gc` waits for); for a job by `key`, only a cache that has a jobs folder.
pub(super) fn open_store_for_job(g: &Global, key: Option<&str>) -> Result<Store, Failure> {
    require_cache_folder(&g.cache)?;
    // A job by key was written by a driver into this cache's jobs folder: without one there is
    // no job to run, and opening the store would make a cache where none was.
    let jobs = jobs_dir_in(&g.cache);
    if let Some(key) = key.filter(|_| !jobs.is_dir()) {
        return Err(Failure::Other(SpecError::Missing { key: key.to_string(), dir: jobs }.to_string()));
    }
    Store::open_for_job(&g.cache).map_err(|e| opening_failed(g, e))
}

/// A command-line path that must be a folder (or not exist yet) and is something else: the
/// command line is wrong, which is exit 2, not a failure of the work.
pub(super) fn require_folder(option: &str, path: &Path) -> Result<(), Failure> {
    let usage = |what: String| {
        Err(Failure::argument(
            option,
            format!("{option} {} {what}; give a folder (it is created if missing)", path.display()),
        ))
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => usage("is not a folder".into()),
        Ok(_) => Ok(()),
        // A link to nothing would be neither followed nor replaced when the folder is made.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(path).is_ok() => {
            usage("is a link to nothing".into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => usage(format!("cannot be looked at ({e})")),
    }
}

/// The `--cache` folder: missing, empty, or a cache already. Any other folder (a home, a
/// repository) is refused before anything is created in it.
pub(super) fn require_cache_folder(path: &Path) -> Result<(), Failure> {
    /// How many of the other folder's entries the error names.
    const SHOWN: usize = 3;
    require_folder("--cache", path)?;
    let mut foreign =
        crate::cache::layout::foreign_entries(path, SHOWN).map_err(|e| Failure::runtime(CacheError::io(path)(e)))?;
    if foreign.is_empty() {
        return Ok(());
    }
    let more = foreign.len() > SHOWN;
    foreign.truncate(SHOWN);
    Err(Failure::argument(
        "--cache",
        format!(
            "--cache {} is a folder of other files ({}{}), not a cfrun cache; give a new or empty folder, or an \
             existing cache",
            path.display(),
            foreign.join(", "),
            if more { ", …" } else { "" }
        ),
    ))
}
