//! Whether the cache's locks hold across machines.
//!
//! cfrun's per-key locks are `flock(2)` locks. On a local file system they hold between the
//! processes of one machine. On NFS, Linux turns `flock` into NLM (NFSv3) or NFSv4 byte-range
//! locks that the server enforces for every client, unless the mount says `nolock` or
//! `local_lock=flock|all`, in which case each client only sees its own locks. Lustre enforces
//! them only when mounted with `flock` (`localflock` keeps them per client). FUSE file systems
//! (sshfs, s3fs, ...) generally keep locks on the client. A cache used by jobs on several nodes
//! must therefore sit on a mount whose locks the server enforces: [`require_shared_locks`]
//! reads the mount table and refuses the others, naming the option at fault.

use std::path::{Path, PathBuf};

/// The mount a path lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// `nfs4`, `ext4`, `lustre`, `fuse.sshfs`, ...
    pub fstype: String,
    /// Per-mount and super-block options together.
    pub options: Vec<String>,
}

/// What the mount means for cross-node locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockScope {
    /// Enforced for every client of a network file system.
    Cluster,
    /// A local file system: locks hold, but only processes on this machine see the cache.
    Machine,
    /// A shared file system whose locks each client keeps to itself: two nodes could compute
    /// one key at once.
    ClientOnly(String),
}

/// Why a cache cannot be shared.
#[derive(Debug, thiserror::Error)]
#[error(
    "the cache {} is on {fstype} at {}, where {why}; cfrun's locks would not hold across nodes. \
     Put the cache on a file system with cluster-wide locks (NFSv3 with lockd, NFSv4, Lustre \
     mounted with `flock`, GPFS, CephFS; see docs/CLUSTER.md)",
    .cache.display(), .point.display()
)]
pub struct NotShareable {
    /// The cache.
    pub cache: PathBuf,
    /// Its mount point.
    pub point: PathBuf,
    /// Its file-system type.
    pub fstype: String,
    /// What is wrong.
    pub why: String,
}

/// Parses `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let point = unescape(left.get(4)?);
            let fstype = right.first()?.to_string();
            let options =
                left.get(5).into_iter().chain(right.get(2)).flat_map(|o| o.split(',')).map(String::from).collect();
            Some(Mount { point: PathBuf::from(point), fstype, options })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The mount holding `path` (the longest mount point that is a prefix of it; later mounts win).
pub fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.point))
        .max_by_key(|(i, m)| (m.point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Judges a mount.
pub fn lock_scope(m: &Mount) -> LockScope {
    let has = |o: &str| m.options.iter().any(|x| x == o);
    match m.fstype.as_str() {
        "nfs" | "nfs4" => {
            if has("nolock") {
                LockScope::ClientOnly("it is mounted with `nolock`".into())
            } else if has("local_lock=flock") || has("local_lock=all") {
                LockScope::ClientOnly("it is mounted with `local_lock=flock|all` (flock stays on each client)".into())
            } else {
                LockScope::Cluster
            }
        }
        "lustre" => {
            if has("flock") {
                LockScope::Cluster
            } else if has("localflock") {
                LockScope::ClientOnly("it is mounted with `localflock`".into())
            } else {
                LockScope::ClientOnly("it is mounted without `flock` (flock fails or stays local)".into())
            }
        }
        "gpfs" | "ceph" | "fuse.ceph-fuse" | "fuse.glusterfs" | "glusterfs" | "beegfs" | "ocfs2" | "gfs2" => {
            LockScope::Cluster
        }
        "cifs" | "smb3" if has("nobrl") => LockScope::ClientOnly("it is mounted with `nobrl`".into()),
        "cifs" | "smb3" => LockScope::Cluster,
        t if t.starts_with("fuse") => {
            LockScope::ClientOnly("FUSE file systems of this kind keep locks on each client".into())
        }
        _ => LockScope::Machine,
    }
}

/// The mount table: `CFRUN_MOUNTINFO` names a file to read instead (for tests), else
/// `/proc/self/mountinfo`. Read up to 16 MiB (a host with 100,000 mounts), so that a path to an
/// endless file cannot take the memory.
fn mount_table() -> Option<String> {
    let path = std::env::var_os("CFRUN_MOUNTINFO").map_or_else(|| PathBuf::from("/proc/self/mountinfo"), PathBuf::from);
    String::from_utf8(super::fsutil::read_limited(&path, 16 << 20).ok()?).ok()
}

/// Refuses a cache whose locks would not hold across nodes; a local file system passes with a
/// warning (fine for a one-node cluster, invisible to other nodes).
pub fn require_shared_locks(cache: &Path) -> Result<(), NotShareable> {
    let abs = std::fs::canonicalize(cache).unwrap_or_else(|_| cache.to_path_buf());
    let Some(table) = mount_table() else {
        tracing::warn!("cannot read the mount table; assuming the cache's locks hold across nodes");
        return Ok(());
    };
    let mounts = parse_mountinfo(&table);
    let Some(m) = mount_of(&mounts, &abs) else { return Ok(()) };
    match lock_scope(m) {
        LockScope::Cluster => Ok(()),
        LockScope::Machine => {
            // Checked twice in a run (before the cache is opened, and by the executor for library
            // callers): said once.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            tracing::info!(
                "the cache is on a local file system ({} at {}): only jobs on this machine can use it",
                m.fstype,
                m.point.display()
            );
            Ok(())
        }
        LockScope::ClientOnly(why) => {
            Err(NotShareable { cache: abs, point: m.point.clone(), fstype: m.fstype.clone(), why })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /shared rw,relatime shared:20 - nfs4 srv:/export rw,vers=4.2,local_lock=none,addr=10.0.0.1
41 22 0:51 / /scratch rw,relatime - nfs srv:/scratch rw,vers=3,nolock,local_lock=all
42 22 0:52 / /lus rw - lustre 10.0.0.2@tcp:/fs rw,localflock
43 22 0:53 / /home/me/remote\\040dir rw,nosuid - fuse.sshfs me@host:/ rw,user_id=0
";

    fn scope(path: &str) -> LockScope {
        let mounts = parse_mountinfo(TABLE);
        lock_scope(mount_of(&mounts, Path::new(path)).unwrap())
    }

    #[test]
    fn mounts_are_judged_by_type_and_options() {
        assert_eq!(scope("/shared/cache"), LockScope::Cluster);
        assert_eq!(scope("/home/me/cache"), LockScope::Machine);
        assert!(matches!(scope("/scratch/cache"), LockScope::ClientOnly(w) if w.contains("nolock")));
        assert!(matches!(scope("/lus/c"), LockScope::ClientOnly(w) if w.contains("localflock")));
        assert!(matches!(scope("/home/me/remote dir/c"), LockScope::ClientOnly(_)));
    }

    #[test]
    fn the_longest_mount_point_wins_but_not_a_name_prefix() {
        let mounts = parse_mountinfo(TABLE);
        assert_eq!(mount_of(&mounts, Path::new("/shared")).unwrap().fstype, "nfs4");
        assert_eq!(mount_of(&mounts, Path::new("/sharedx/c")).unwrap().fstype, "ext4");
    }
}
