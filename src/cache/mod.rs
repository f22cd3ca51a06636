//! The content-addressed cache: typed ids, recipe keys, the on-disk store, locks and run records.

pub mod canonical;
pub mod checkpoint;
pub mod experiment_file;
pub mod fs_check;
pub mod fsutil;
pub mod gc;
pub mod ids;
pub mod key;
pub mod layout;
pub mod lock;
pub mod lock_holders;
pub mod manifest;
pub mod readable;
pub mod records;
pub mod remove_tree;
pub mod run_settings;
pub mod store;
pub mod verify;

use std::path::{Path, PathBuf};

pub use ids::{Digest, RecipeKey};
pub use key::{DirtyReason, InputDigest, Recipe};
pub use store::{KeyRecord, Store};

/// A cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system operation failed.
    #[error("cache: {}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An object about to be read no longer hashes to its digest.
    #[error("input {instance} is damaged in the cache ({detail}); it was removed, run again to rebuild it")]
    Damaged {
        /// The instance that produced the object (from its provenance).
        instance: String,
        /// What the check found.
        detail: Box<verify::Damage>,
    },
    /// The outputs hold so many files that their manifest would be more than cfrun reads
    /// back: published, the result would read as damaged on every later run.
    #[error(
        "the outputs hold {files} files, whose manifest would take {}, more than the {} cfrun reads back; \
         write fewer files (one archive, or one file of rows)",
        crate::human::bytes(*bytes),
        crate::human::bytes(manifest::MAX_RECORD_BYTES)
    )]
    TooManyFiles {
        /// Files in the outputs.
        files: usize,
        /// Size the manifest would have.
        bytes: u64,
    },
}

impl CacheError {
    /// Adapter for `map_err` that records the path.
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.as_ref().to_path_buf();
        move |source| CacheError::Io { path, source }
    }
}
