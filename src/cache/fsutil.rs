//! Small file-system helpers for crash-safe writes and for never leaving the cache.
//!
//! A cache may be shared between users, so any path inside it may have been replaced by a
//! symbolic link to somewhere else. Everything here that opens or creates a file in the cache
//! does so with `O_NOFOLLOW`, and every directory cfrun writes into is checked to be a real
//! directory, so a planted link makes cfrun refuse with an error instead of writing through it.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::ids::Digest;

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename, fsync
/// of the directory. Readers see the old file or the new one, never a partial one. The rename
/// replaces a link at `path` rather than writing through it; the directory itself must be real.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    refuse_link(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(dir)
}

/// Syncs a directory so that renames inside it survive a crash.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Size and blake3 of a regular file, streaming; a link is refused, not followed.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, Digest)> {
    let mut f = open_read(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, Digest(*hasher.finalize().as_bytes())))
}

/// Flags of every open in the cache: never follow a link, and never block in `open` (a FIFO
/// planted in place of a file would otherwise hang cfrun until someone opened its other end).
const SAFE_OPEN: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// Opens a regular file for reading without following a link at its last component.
pub fn open_read(path: &Path) -> std::io::Result<fs::File> {
    open_read_sized(path).map(|(f, _)| f)
}

/// [`open_read`], with the file's size when opened.
pub fn open_read_sized(path: &Path) -> std::io::Result<(fs::File, u64)> {
    let f = fs::OpenOptions::new().read(true).custom_flags(SAFE_OPEN).open(path).map_err(explain_link)?;
    let len = regular_len(&f)?;
    Ok((f, len))
}

/// Refuses what is not a regular file (a FIFO, a device, a folder) once opened.
fn regular(f: fs::File) -> std::io::Result<fs::File> {
    regular_len(&f)?;
    Ok(f)
}

/// The size of an opened regular file; an error for anything else.
fn regular_len(f: &fs::File) -> std::io::Result<u64> {
    let meta = f.metadata()?;
    if meta.is_file() {
        Ok(meta.len())
    } else {
        Err(std::io::Error::other("not a regular file; cfrun only reads and writes plain files in its cache"))
    }
}

/// Reads a whole file without following a link, refusing files larger than `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let (f, len) = open_read_sized(path)?;
    // Room for the whole file and one byte more: one read fills it and the next finds the end,
    // where growing from empty took a read per doubling (status reads two per instance: the key
    // record and the manifest).
    // The size only sizes the buffer; the limit is still enforced on what is read.
    let mut out = Vec::with_capacity(usize::try_from(len.min(limit)).unwrap_or(0).saturating_add(1));
    f.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!("{} is larger than {limit} bytes", path.display())));
    }
    Ok(out)
}

/// Opens (creating if needed) a file for appending and reading its end, without following a link.
pub fn open_append(path: &Path) -> std::io::Result<fs::File> {
    regular(
        fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .custom_flags(SAFE_OPEN)
            .open(path)
            .map_err(explain_link)?,
    )
}

/// Whether `path` lies on a file system mounted read-only (`statvfs`'s `ST_RDONLY`).
pub fn on_read_only_mount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the struct's size, filled on success only.
    let filled = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } == 0;
    // SAFETY: read only when statvfs reported that it wrote the struct.
    filled && (unsafe { stat.assume_init() }.f_flag & libc::ST_RDONLY) != 0
}

/// Opens (creating if needed) a lock file, without following a link (a dangling link would
/// otherwise make cfrun create its target, wherever that is).
/// A lock file that exists but cannot be written (a read-only cache, another user's file) is
/// opened for reading: `flock` works on either.
pub fn open_lock_file(path: &Path) -> std::io::Result<fs::File> {
    let writable = fs::OpenOptions::new().create(true).truncate(false).write(true).custom_flags(SAFE_OPEN).open(path);
    match writable {
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem) => {
            open_read(path).map_err(|_| e)
        }
        other => regular(other.map_err(explain_link)?),
    }
}

/// Creates `dir` if missing (its parent must exist) and checks that it is a real directory,
/// not a link to one elsewhere.
pub fn ensure_real_dir(dir: &Path) -> std::io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir)?;
            if meta.file_type().is_symlink() {
                Err(link_error(dir))
            } else if !meta.is_dir() {
                Err(std::io::Error::other(format!("{} exists and is not a directory", dir.display())))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(e),
    }
}

/// An error if `path` exists and is a symbolic link.
pub fn refuse_link(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(link_error(path)),
        _ => Ok(()),
    }
}

/// An error if `path` exists and is not a regular file (a link, a FIFO, a folder).
pub fn plain_file_or_absent(path: &Path) -> std::io::Result<()> {
    refuse_link(path)?;
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => Err(std::io::Error::other(format!("{} is not a regular file", path.display()))),
        _ => Ok(()),
    }
}

fn link_error(path: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "{} is a symbolic link; cfrun never follows links inside its cache (remove the link)",
        path.display()
    ))
}

/// `O_NOFOLLOW` on a link fails with ELOOP, whose OS text ("too many levels of symbolic links")
/// does not say what happened.
fn explain_link(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        std::io::Error::other("the path is a symbolic link; cfrun never follows links inside its cache (remove it)")
    } else {
        e
    }
}

/// Gives the owner the rights to list a folder and change its entries, where it lacks them (a
/// folder someone else's program left read-only). `dir` is not followed if it is a link.
pub fn open_to_owner(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::symlink_metadata(dir)?.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    Ok(())
}

/// Removes the entries of `dir` whose names `stale` accepts (folders with all they hold, read-only
/// ones included); returns how many went, and pushes what could not go to `failures`. For the
/// cache folders whose contents are stale once no process uses the cache.
pub fn clear_entries(dir: &Path, stale: &dyn Fn(&str) -> bool, failures: &mut Vec<String>) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in rd.filter_map(|e| e.ok()) {
        if !entry.file_name().to_str().is_some_and(stale) {
            continue;
        }
        let path = entry.path();
        // A `command` stage's scratch folder, which a killed run left, may hold read-only inputs
        // and whatever tree the command made.
        match super::remove_tree::remove_tree(&path) {
            Ok(()) => removed += 1,
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        let link = dir.path().join("log");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(open_append(&link).is_err());
        assert!(open_lock_file(&link).is_err());
        assert!(!outside.exists(), "a dangling link's target must not be created");
        std::fs::write(&outside, b"x").unwrap();
        assert!(hash_file(&link).is_err());
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let dlink = dir.path().join("dlink");
        std::os::unix::fs::symlink(&real, &dlink).unwrap();
        assert!(ensure_real_dir(&dlink).is_err());
        assert!(write_atomic(&dlink.join("f"), b"y").is_err());
        assert!(!real.join("f").exists());
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_append(&fifo).is_err(), "a FIFO is refused without blocking");
        assert!(open_lock_file(&fifo).is_err());
        assert!(read_limited(&fifo, 10).is_err());
        ensure_real_dir(&dir.path().join("fresh")).unwrap();
        ensure_real_dir(&dir.path().join("fresh")).unwrap();
    }

    #[test]
    fn read_limited_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        let bytes: Vec<u8> = (0..100u8).collect();
        std::fs::write(&f, &bytes).unwrap();
        assert_eq!(read_limited(&f, 100).unwrap(), bytes);
        assert!(read_limited(&f, 99).is_err());
        assert!(read_limited(&f, 0).is_err());
        std::fs::write(&f, b"").unwrap();
        assert_eq!(read_limited(&f, 0).unwrap(), b"");
    }
}
