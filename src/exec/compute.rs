//! Computing one job: reuse its key if published (after verifying the bytes), else take the key's
//! lock, run the op into a staging folder and publish atomically. The local executor's threads and
//! `cfrun exec` on a cluster node both come here, so a job runs the same code wherever it runs.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::Device;
use indicatif::MultiProgress;

use super::job::Job;
use super::outcome::Outcome;
use super::progress::Progress;
use crate::cache::lock::{self, TryLock};
use crate::cache::store::{Check, Untrusted};
use crate::cache::{KeyRecord, RecipeKey, Store};
use crate::ops::StageProgress;
use crate::ops::{self, InputArtifact, OpError, StageCtx};

/// Where a job computes.
#[derive(Clone)]
pub struct ComputeEnv {
    /// The cache.
    pub store: Store,
    /// Where tensors live.
    pub device: Device,
    /// The device's name for provenance (`cpu`, `cuda:0`).
    pub device_name: String,
    /// Progress bars (when stderr is a terminal).
    pub bars: Option<MultiProgress>,
    /// Added to the provenance (e.g. the Slurm job id and node).
    pub provenance: serde_json::Map<String, serde_json::Value>,
}

/// [`compute`], with a panic inside the stage turned into that stage's failure: the scheduler
/// must hear back from every job it started, or it would wait for it forever. Staging folders and
/// locks are released by their destructors while the panic unwinds.
pub fn compute_guarded(env: &ComputeEnv, job: &Job) -> Result<(KeyRecord, Outcome), String> {
    let run = || {
        // A fault-injection point for the tests: the instance named here panics.
        if std::env::var("CFRUN_FAILPOINT_PANIC").is_ok_and(|v| v == job.instance.name) {
            panic!("failpoint CFRUN_FAILPOINT_PANIC");
        }
        // And here the whole process aborts, as a crash in native code would (for jobs run as
        // processes: their driver must tell the death apart and say what it last printed);
        // `INSTANCE@published` aborts once its result is published (the driver must use it).
        let abort = std::env::var("CFRUN_FAILPOINT_ABORT").ok();
        if abort.as_deref() == Some(job.instance.name.as_str()) {
            eprintln!("failpoint CFRUN_FAILPOINT_ABORT: aborting");
            std::process::abort();
        }
        let result = compute(env, job);
        if abort.is_some_and(|v| v == format!("{}@published", job.instance.name)) && result.is_ok() {
            eprintln!("failpoint CFRUN_FAILPOINT_ABORT: aborting after publishing");
            std::process::abort();
        }
        result
    };
    match crate::panics::catch(run) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(msg) => Err(format!("internal error (a bug in cfrun; please report it): panicked: {msg}")),
    }
}

/// Reuses or computes one job, holding its key's lock while computing.
pub fn compute(env: &ComputeEnv, job: &Job) -> Result<(KeyRecord, Outcome), OpError> {
    let store = &env.store;
    let (inst, key) = (&job.instance, job.key);
    if let Some(record) = cached(store, &inst.name, &key).map_err(cache_err)? {
        return Ok((record, Outcome::Cached));
    }
    let lock_path = store.lock_path(&key);
    let _guard = match lock::try_lock(&lock_path).map_err(cache_err)? {
        TryLock::Acquired(g) => g,
        TryLock::Busy => {
            tracing::info!("waiting for lock on {} (another cfrun is computing it)", inst.name);
            lock::lock(&lock_path).map_err(cache_err)?
        }
    };
    // Another process may have published it while we waited.
    if let Some(record) = cached(store, &inst.name, &key).map_err(cache_err)? {
        return Ok((record, Outcome::Cached));
    }
    let op = inst.op;
    let staging = store.staging_dir().map_err(cache_err)?;
    let mut inputs: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
    for (slot, list) in &job.inputs {
        let artifacts = list
            .iter()
            .map(|i| {
                let kind = ops::find(&i.record.recipe.op)
                    .and_then(|o| o.output_kind(&i.record.recipe.params, &i.output))
                    .ok_or_else(|| OpError::Invalid(format!("input {} has no output `{}`", i.instance, i.output)))?;
                Ok(InputArtifact {
                    dir: store.output_dir(&i.record.object, &i.output),
                    kind,
                    instance: i.instance.clone(),
                    stage: i.stage.clone(),
                    axes: i.axes.clone(),
                })
            })
            .collect::<Result<Vec<_>, OpError>>()?;
        inputs.insert(slot.clone(), artifacts);
    }
    // No byte enters a computation unless it still hashes to the digest its key promises.
    store.verify_inputs(job.inputs.values().flatten().map(|i| &i.record)).map_err(cache_err)?;
    tracing::info!("running {} ({})", inst.name, key.short());
    let progress = Progress::new(&inst.name, env.bars.clone());
    let started = Instant::now();
    let mut ctx = StageCtx {
        name: &inst.name,
        params: &inst.params,
        inputs,
        staging: staging.path(),
        checkpoint_dir: store.checkpoint_dir(&key),
        data_dir: store.data_dir(),
        device: &env.device,
        progress: &progress,
        siblings: &job.siblings,
        notes: serde_json::Map::new(),
    };
    let collector = super::warnings::collect();
    op.run(&mut ctx)?;
    let warnings = collector.take();
    progress.finish();
    for out in op.output_names(&inst.params) {
        // Folders alone are not an output: publishing removes empty ones (no digest covers them).
        if !holds_a_file(&staging.path().join(&out)) {
            return Err(OpError::MissingOutput { op: op.name(), output: out });
        }
    }
    super::declared_metrics::check(op, &inst.params, staging.path())?;
    let mut provenance = serde_json::json!({
        "instance": inst.name,
        "experiment": job.experiment,
        "op": op.name(),
        "op_version": op.version(),
        "params": inst.params,
        "inputs": job.inputs.iter().map(|(slot, list)| (slot.clone(), list.iter().map(|i| {
            serde_json::json!({"instance": i.instance, "output": i.output,
                "digest": i.record.outputs.get(&i.output).map(|d| d.to_string())})
        }).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
        "seed": inst.params.get("seed"),
        "device": env.device_name,
        "threads": rayon::current_num_threads(),
        "cfrun_version": env!("CARGO_PKG_VERSION"),
        "libc": libc_version(),
        "started_unix": now_unix() - started.elapsed().as_secs_f64(),
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    if let Some(map) = provenance.as_object_mut() {
        map.extend(env.provenance.clone());
        // The op's own notes never replace what every result records.
        for (k, v) in std::mem::take(&mut ctx.notes) {
            map.entry(k).or_insert(v);
        }
        if !env.device.is_cpu() {
            map.insert("gpu_math".into(), super::device::gpu_math());
        }
        // Kept with the result, so a run that finds it cached can say them again.
        if !warnings.is_empty() {
            map.insert("warnings".into(), warnings.into());
        }
    }
    let record = store.publish(staging, key, &job.recipe, provenance).map_err(cache_err)?;
    drop_checkpoint(store, &key);
    Ok((record, Outcome::Ran))
}

/// The C library's version (`glibc 2.36`): its `expf`, `logf`, `sinf` and the like compute
/// bits of every result (images, initial weights, softmax), and hosts sharing a cache may have
/// different builds of it, which the key cannot see.
fn libc_version() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: glibc returns a pointer to a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        Some(format!("glibc {}", version.to_string_lossy()))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Whether `dir` is a folder with a plain file somewhere below it.
fn holds_a_file(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => holds_a_file(&e.path()),
        Ok(t) => t.is_file(),
        Err(_) => false,
    })
}

/// The verified record of `key`; a damaged object is reported, evicted and treated as missing.
/// One this process may not read is an error: rebuilding it would cost the computation and
/// then fail to replace it.
pub fn cached(store: &Store, name: &str, key: &RecipeKey) -> Result<Option<KeyRecord>, crate::cache::CacheError> {
    let Some(record) = store.lookup(key) else { return Ok(None) };
    let Err(untrusted) = store.trust(&record, Check::Full) else {
        // A run stopped between publishing and clearing the checkpoint left it behind; it can
        // only be served from here on, so it goes now rather than at the next `gc`.
        drop_checkpoint(store, key);
        return Ok(Some(record));
    };
    let why = match untrusted {
        Untrusted::Unreadable(denied) => return Err(denied),
        Untrusted::Damaged(why) => why,
    };
    if store.evict(&record) {
        tracing::warn!("{name}: cached result is damaged ({why}); rebuilding it");
        return Ok(None);
    }
    // Another process put its bytes back meanwhile: served if they now check out.
    Ok(store.lookup(key).filter(|r| store.verify(r).is_ok()))
}

/// Removes the checkpoint of a published result, if one is there (best effort: `gc` clears
/// what is left).
fn drop_checkpoint(store: &Store, key: &RecipeKey) {
    let checkpoint = store.checkpoint_dir(key);
    if checkpoint.exists() {
        let _ = std::fs::remove_dir_all(checkpoint);
    }
}

fn cache_err(e: crate::cache::CacheError) -> OpError {
    OpError::Cache(e)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output of folders alone is no output (publishing would remove it); one file, at any
    /// depth, makes one.
    #[test]
    fn an_output_of_empty_folders_holds_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        assert!(!holds_a_file(&out), "absent");
        std::fs::create_dir_all(out.join("logs/deeper")).unwrap();
        assert!(!holds_a_file(&out), "folders only");
        std::fs::write(out.join("logs/deeper/x.txt"), b"x").unwrap();
        assert!(holds_a_file(&out));
    }
}
