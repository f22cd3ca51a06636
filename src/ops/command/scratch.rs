//! The folder a command runs in, on the cache's file system next to the stage's staging folder:
//!
//! ```text
//! <code files at their relative paths>   copies, checked against the digests the plan hashed
//! in/<slot>/...                          copies of the inputs, checked against their manifests, read-only
//! out/<output>/                          one empty folder per declared output
//! tmp/                                   TMPDIR
//! ```
//! Copies rather than links keep the cache unharmed whatever the command does to them. The
//! folder is removed when the stage ends, whatever happened.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cache::fsutil::{hash_file, open_to_owner};
use crate::cache::remove_tree::remove_tree;
use crate::cache::store::read_manifest;
use crate::ops::OpError;

/// How deep folders may nest inside one output, and how long a path inside it may be. Larger
/// trees are refused before anything else walks them: the walks that fix modes, hash and publish
/// an output go a level per folder, and such paths, joined onto the cache's, pass what the OS
/// accepts (`PATH_MAX`, 4,096 bytes on Linux).
const MAX_OUTPUT_DEPTH: usize = 32;
/// The longest path inside one output, in bytes (see [`MAX_OUTPUT_DEPTH`]).
const MAX_OUTPUT_PATH: usize = 1024;

/// What makes the tree under `dir` too large to publish, if anything: a folder more than `max`
/// folders below it, or a path inside it longer than [`MAX_OUTPUT_PATH`] bytes (links not
/// followed). Walks with a list, not recursion, and stops at the first. Opens each folder to its
/// owner on the way (a command may leave them unreadable; [`set_modes`] sets them all afterwards).
fn too_large(dir: &Path, max: usize) -> std::io::Result<Option<String>> {
    let base = dir.as_os_str().len();
    let mut pending = vec![(dir.to_path_buf(), 0)];
    while let Some((folder, depth)) = pending.pop() {
        open_to_owner(&folder)?;
        for entry in fs::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            if path.as_os_str().len() - base > MAX_OUTPUT_PATH {
                return Ok(Some(format!("holds a path longer than {MAX_OUTPUT_PATH} bytes")));
            }
            if entry.file_type()?.is_dir() {
                if depth + 1 > max {
                    return Ok(Some(format!("nests folders more than {max} deep")));
                }
                pending.push((path, depth + 1));
            }
        }
    }
    Ok(None)
}

/// A scratch folder, removed on drop.
pub struct Scratch {
    /// Kept from `tempfile`'s own removal, which recurses per level: [`Drop`] removes it.
    dir: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpError {
    OpError::io(what)
}

impl Scratch {
    /// A fresh folder beside `staging` (same file system, so outputs can be renamed into it).
    pub fn create(staging: &Path) -> Result<Scratch, OpError> {
        let parent = staging.parent().unwrap_or(staging);
        let dir = tempfile::Builder::new()
            .prefix("command-")
            .tempdir_in(parent)
            .map_err(io(format!("creating a scratch folder in {}", parent.display())))?;
        Ok(Scratch { dir: dir.keep() })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where output `name` is written.
    pub fn output(&self, name: &str) -> PathBuf {
        self.path().join("out").join(name)
    }

    /// Copies each code file, checking its bytes against the digest taken when the plan was made.
    pub fn copy_code(&self, code: &std::collections::BTreeMap<String, String>) -> Result<(), OpError> {
        for (rel, digest) in code {
            let target = self.path().join(rel);
            copy_checked(Path::new(rel), &target, digest)
                .map_err(|why| OpError::Invalid(format!("code file `{rel}` {why}")))?;
        }
        Ok(())
    }

    /// Copies the output folder `src` (inside a cache object) to `in/<slot>`, every file checked
    /// against the object's manifest, and makes the copy read-only.
    pub fn copy_input(&self, slot: &str, src: &Path) -> Result<(), OpError> {
        let object = src.parent().ok_or_else(|| OpError::Invalid(format!("input `{slot}` has no object")))?;
        let output = src.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        // Checked paths only: each is joined onto the copy's folder below.
        let manifest = read_manifest(object).ok_or_else(|| {
            OpError::Invalid(format!("input `{slot}`: the manifest of {} is unreadable or damaged", object.display()))
        })?;
        let root = self.path().join("in").join(slot);
        fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        let prefix = format!("{output}/");
        for entry in manifest.files.iter().filter(|f| f.path.starts_with(&prefix)) {
            let rel = &entry.path[prefix.len()..];
            copy_checked(&object.join(&entry.path), &root.join(rel), &entry.hash.to_string())
                .map_err(|why| OpError::Invalid(format!("input `{slot}`: {} {why}", entry.path)))?;
        }
        set_modes(&root, Some(0o444), 0o555).map_err(io(format!("making {} read-only", root.display())))
    }

    /// One empty folder per declared output.
    pub fn make_outputs<'a>(&self, names: impl Iterator<Item = &'a String>) -> Result<(), OpError> {
        for name in names {
            fs::create_dir_all(self.output(name)).map_err(io(format!("creating out/{name}")))?;
        }
        Ok(())
    }

    /// Gives everything under `out/` ordinary permissions (the cache must be able to remove it
    /// later) and refuses what is not a file or a folder.
    pub fn seal_outputs(&self) -> Result<(), OpError> {
        let out = self.path().join("out");
        // Not followed: a command that put a link to a folder elsewhere in place of `out` (or of
        // `out/NAME`) would have cfrun change modes there and move that folder into the cache.
        let real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir());
        if !real_dir(&out) {
            return Err(OpError::Invalid(
                "the command removed its `out` folder or replaced it with something that is not a folder".into(),
            ));
        }
        for entry in fs::read_dir(&out).map_err(io("listing out/"))? {
            let path = entry.map_err(io("listing out/"))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if !real_dir(&path) {
                return Err(OpError::Invalid(format!(
                    "`out/{name}` is not a folder (a link or a file); write each output's files into its own folder"
                )));
            }
            if let Some(why) = too_large(&path, MAX_OUTPUT_DEPTH).map_err(io(format!("listing out/{name}")))? {
                return Err(OpError::Invalid(format!(
                    "`out/{name}` {why}; write each output's files at most {MAX_OUTPUT_DEPTH} folders down, \
                     with paths of at most {MAX_OUTPUT_PATH} bytes"
                )));
            }
        }
        set_modes(&out, Some(0o644), 0o755).map_err(io("fixing the permissions of out/"))
    }

    /// Fails on anything in `out/` that is not a declared output.
    pub fn check_undeclared<'a>(&self, declared: impl Iterator<Item = &'a String> + Clone) -> Result<(), OpError> {
        let out = self.path().join("out");
        let mut names: Vec<String> = fs::read_dir(&out)
            .map_err(io("listing out/"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            if !declared.clone().any(|d| *d == name) {
                let valid: Vec<&str> = declared.clone().map(String::as_str).collect();
                return Err(OpError::Invalid(format!(
                    "wrote an undeclared output `out/{name}` (declared: {}); add it to `outputs` with its kind, or write it elsewhere",
                    valid.join(", ")
                )));
            }
        }
        for name in declared {
            let empty = fs::read_dir(self.output(name)).map(|mut d| d.next().is_none()).unwrap_or(true);
            if empty {
                return Err(OpError::Invalid(format!("wrote nothing into its output `out/{name}`")));
            }
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Not `TempDir`'s own removal: the command may have left read-only folders (the inputs)
        // or a tree deep enough to overflow a recursive one. What cannot go stays for the next
        // run's or `gc`'s clearing of `tmp/`.
        if let Err(e) = remove_tree(&self.dir) {
            tracing::warn!("cannot remove the scratch folder {}: {e}", self.dir.display());
        }
    }
}

/// Copies `src` to `dst`, hashing the bytes copied; `Err` when they do not match `digest`.
fn copy_checked(src: &Path, dst: &Path, digest: &str) -> Result<(), String> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    fs::copy(src, dst).map_err(|e| format!("cannot be copied: {e}"))?;
    let (_, got) = hash_file(dst).map_err(|e| e.to_string())?;
    if got.to_string() != digest {
        return Err(format!("changed since it was hashed (expected {digest}, found {got}); run again"));
    }
    Ok(())
}

/// Sets the mode of every folder under `dir` and, with `file`, of every file (symlinks are left
/// alone, not followed). A file with other hard links (the command linked a file from outside)
/// is first replaced by a copy of its own: its mode is changed, and it may be published, without
/// touching the file outside or letting later edits of it reach the cache.
fn set_modes(dir: &Path, file: Option<u32>, folder: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // Open the folder up first so its entries can be listed and changed.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            set_modes(&entry.path(), file, folder)?;
        } else if let (true, Some(file)) = (ty.is_file(), file) {
            let meta = entry.metadata()?;
            if meta.nlink() > 1 {
                let copy = dir.join(format!(".cfrun-own-copy-{}", std::process::id()));
                fs::copy(entry.path(), &copy)?;
                fs::rename(&copy, entry.path())?;
            }
            let exec = if meta.permissions().mode() & 0o100 != 0 { 0o111 } else { 0 };
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(file | exec))?;
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output nesting folders past the bound is refused by name before any walk that goes a
    /// level per folder; one at the bound is sealed. The scratch folder goes on drop, read-only
    /// folders and all.
    #[test]
    fn an_output_nested_too_deep_is_refused_and_the_scratch_folder_still_goes() {
        let base = tempfile::tempdir().unwrap();
        let scratch = Scratch::create(&base.path().join("staging")).unwrap();
        let names = ["m".to_string()];
        scratch.make_outputs(names.iter()).unwrap();
        let nest = |levels: usize| {
            let mut dir = scratch.output("m");
            for _ in 0..levels {
                dir = dir.join("d");
            }
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f"), b"x").unwrap();
        };
        nest(MAX_OUTPUT_DEPTH);
        scratch.seal_outputs().unwrap();
        nest(MAX_OUTPUT_DEPTH + 1);
        let err = scratch.seal_outputs().unwrap_err().to_string();
        assert!(err.contains("`out/m` nests folders more than 32 deep"), "{err}");
        fs::remove_dir_all(scratch.output("m").join("d")).unwrap();
        // Five folders of 250 bytes: shallow, but a path past what the cache can publish.
        let long = (0..5).fold(scratch.output("m"), |p, i| p.join(format!("{i}{}", "x".repeat(249))));
        fs::create_dir_all(&long).unwrap();
        let err = scratch.seal_outputs().unwrap_err().to_string();
        assert!(err.contains("`out/m` holds a path longer than 1024 bytes"), "{err}");
        let inputs = scratch.path().join("in/x/sub");
        fs::create_dir_all(&inputs).unwrap();
        fs::set_permissions(scratch.path().join("in/x"), fs::Permissions::from_mode(0o500)).unwrap();
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists(), "the scratch folder is gone");
    }
}
