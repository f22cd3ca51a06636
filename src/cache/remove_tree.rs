//! Removing a folder that someone else's program filled: a `command` stage's scratch folder, or
//! what a killed run left in `tmp/`. The program may have nested folders thousands deep and left
//! them read-only. `std::fs::remove_dir_all` descends one stack frame and one open folder per
//! level, so such a tree overflows the stack of the thread removing it (aborting the whole run)
//! or runs out of file descriptors, and paths longer than `PATH_MAX` fail outright.
//!
//! Here the tree is flattened instead: the entries of each folder directly inside `root` are
//! renamed up into `root`, and emptied folders removed, until `root` is empty. Every path used
//! is `root` plus two names, whatever the depth; one folder is open at a time; nothing recurses.
//! Links are removed, never followed.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::fsutil::open_to_owner;

/// Removes `root` and everything below it, at any depth, read-only folders included. A link or
/// file at `root` is removed itself; a missing `root` is no error.
pub fn remove_tree(root: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(root) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.is_dir() {
        return fs::remove_file(root);
    }
    let mut lifted = 0u64;
    loop {
        open_to_owner(root)?;
        // Listed first, then changed: the pass renames entries into `root` itself.
        let entries: Vec<(PathBuf, bool)> = fs::read_dir(root)?
            .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?.is_dir()))))
            .collect::<std::io::Result<_>>()?;
        if entries.is_empty() {
            return fs::remove_dir(root);
        }
        for (path, is_dir) in entries {
            if !is_dir {
                fs::remove_file(&path)?;
                continue;
            }
            open_to_owner(&path)?;
            for inner in fs::read_dir(&path)? {
                let inner = inner?;
                if inner.file_type()?.is_dir() {
                    // Moving a folder to another parent rewrites its `..`: it must be writable.
                    open_to_owner(&inner.path())?;
                    fs::rename(inner.path(), free_name(root, &mut lifted)?)?;
                } else {
                    fs::remove_file(inner.path())?;
                }
            }
            fs::remove_dir(&path)?;
        }
    }
}

/// A name in `root` that nothing holds: `rename` would replace an empty folder of that name.
fn free_name(root: &Path, counter: &mut u64) -> std::io::Result<PathBuf> {
    loop {
        *counter += 1;
        let candidate = root.join(format!(".lifted-{counter}"));
        match fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(e),
            Ok(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A chain of folders deeper than any path may be long and than the descriptors a process
    /// may hold, read-only here and there, goes on a thread with a small stack (where
    /// `remove_dir_all` overflowed), along with files, a link (not followed) and a folder named
    /// as a lifted one would be.
    #[test]
    fn removes_any_depth_read_only_folders_and_links_without_following_them() {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep.txt"), b"keep").unwrap();
        // Built from the bottom up, each level wrapped in a new top one: every call's path is short.
        let root = base.path().join("scratch");
        fs::create_dir(&root).unwrap();
        for level in 0..5_000 {
            let top = base.path().join("top");
            fs::create_dir(&top).unwrap();
            fs::write(top.join("f"), b"x").unwrap();
            fs::rename(&root, top.join("d")).unwrap();
            if level % 1_000 == 999 {
                fs::set_permissions(&top, fs::Permissions::from_mode(0o500)).unwrap();
            }
            fs::rename(&top, &root).unwrap();
        }
        symlink(&outside, root.join("link-to-outside")).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o555)).unwrap();
        fs::create_dir_all(root.join(".lifted-1/x")).unwrap();
        let done = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || remove_tree(&root).map(|()| root))
            .unwrap()
            .join()
            .unwrap();
        let root = done.unwrap();
        assert!(fs::symlink_metadata(&root).is_err(), "the root is gone");
        assert_eq!(fs::read(outside.join("keep.txt")).unwrap(), b"keep", "the link was not followed");
        assert_eq!(fs::metadata(&outside).unwrap().permissions().mode() & 0o777, 0o555, "nor its mode changed");
        remove_tree(&root).unwrap();
        let file = base.path().join("plain");
        fs::write(&file, b"x").unwrap();
        remove_tree(&file).unwrap();
        assert!(!file.exists());
    }
}
