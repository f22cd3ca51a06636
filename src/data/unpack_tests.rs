//! Unpacking tests on archives built here: tar.gz, Debian packages of each compression, zips.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::data::store::sha256_hex;

const A: &[u8] = b"first fixture file";
const B: &[u8] = b"second fixture file, a little longer";

fn file(name: &str, bytes: &[u8]) -> FileSpec {
    FileSpec { name: name.into(), sha256: sha256_hex(bytes), size: bytes.len() as u64 }
}

fn wanted() -> Wanted {
    Wanted::new(&[file("a-ubyte", A), file("b-ubyte", B)], &[String::new(), "package/data".into()])
}

/// A tar member with its name written as given, `..` included (tar's builder refuses that).
fn member(tar: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append(&header, bytes).expect("tar member");
}

fn tar_of(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, kind, bytes) in members {
        member(&mut tar, name, *kind, bytes);
    }
    tar.into_inner().expect("tar")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).expect("xz writer");
    enc.write_all(bytes).expect("xz in memory");
    enc.finish().expect("xz in memory")
}

/// An `ar` archive as dpkg writes one: the magic, then each member's 60-byte header and bytes,
/// padded to an even offset.
fn deb(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, bytes) in members {
        let header = format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, 100644, bytes.len());
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(bytes);
        if bytes.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A zip of these members, in this order.
fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
        zip.write_all(bytes).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("under root").display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Writes `bytes` as `name` in a fresh folder and unpacks it into `out` there.
fn unpack_bytes(
    name: &str,
    kind: ArchiveKind,
    bytes: &[u8],
    max_stream: u64,
) -> (tempfile::TempDir, Result<(), String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive: PathBuf = dir.path().join(name);
    fs::write(&archive, bytes).expect("write archive");
    let dest = dir.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    let got = unpack_within(&archive, kind, &dest, &wanted(), max_stream);
    (dir, got)
}

/// Only regular files at a layout's path are written: not other members, not a `..` name, not a
/// link named like a wanted file; a leading `./` or `/` is dropped as tar drops it.
#[test]
fn a_tar_gz_gives_only_the_wanted_files_at_their_layout_paths() {
    use tar::EntryType::{Regular, Symlink};
    let tar = tar_of(&[
        ("package/data/a-ubyte", Regular, A),
        ("./package/data/b-ubyte.gz", Regular, &gz(B)),
        ("package/index.js", Regular, b"module.exports = 1;"),
        ("../a-ubyte", Regular, A),
        ("package/../../b-ubyte", Regular, B),
        ("b-ubyte", Symlink, b""),
        ("elsewhere/a-ubyte", Regular, A),
        ("/a-ubyte.gz", Regular, &gz(A)),
    ]);
    let (dir, got) = unpack_bytes("p.tgz", ArchiveKind::Tgz, &gz(&tar), MAX_STREAM_BYTES);
    got.unwrap();
    let out = dir.path().join("out");
    assert_eq!(files_under(&out), ["a-ubyte.gz", "package/data/a-ubyte", "package/data/b-ubyte.gz"]);
    assert_eq!(fs::read(out.join("package/data/a-ubyte")).unwrap(), A);
    assert_eq!(
        files_under(dir.path()).len(),
        4,
        "nothing beside the archive and the three: {:?}",
        files_under(dir.path())
    );
}

/// A member longer than the file it should be is refused, and what was written of it removed.
#[test]
fn a_member_longer_than_its_file_is_refused() {
    let long = [b'x'; 200];
    let tar = tar_of(&[("package/data/a-ubyte", tar::EntryType::Regular, &long)]);
    let (dir, got) = unpack_bytes("p.tgz", ArchiveKind::Tgz, &gz(&tar), MAX_STREAM_BYTES);
    let msg = got.expect_err("longer than a-ubyte");
    assert!(msg.contains("`package/data/a-ubyte` holds more than 18 B"), "{msg}");
    assert!(files_under(&dir.path().join("out")).is_empty());

    // Whatever a header claims, no more than the limit is written.
    let out = dir.path().join("out");
    let msg = write_member(&mut &long[..], 0, &out, "a-ubyte", 10).expect_err("past 10 bytes");
    assert!(msg.contains("more than 10 B"), "{msg}");
    assert!(!out.join("a-ubyte").exists());
    assert_eq!(write_member(&mut &long[..], 200, &out, "a-ubyte", 200).unwrap(), 200);
    assert_eq!(fs::read(out.join("a-ubyte")).unwrap(), long);
}

/// The decompressed stream is bounded: a megabyte of padding in a few kilobytes of gzip is
/// refused under a bound of half a megabyte, before the wanted file after it is written.
#[test]
fn a_stream_past_its_bound_is_refused() {
    let zeros = vec![0u8; 1 << 20];
    let tar = tar_of(&[
        ("padding.bin", tar::EntryType::Regular, &zeros),
        ("package/data/a-ubyte", tar::EntryType::Regular, A),
    ]);
    let tgz = gz(&tar);
    assert!(tgz.len() < 8 << 10, "a small archive ({} bytes) that unpacks to a megabyte", tgz.len());
    let (_dir, got) = unpack_bytes("p.tgz", ArchiveKind::Tgz, &tgz, tar.len() as u64);
    got.unwrap();
    let (dir, got) = unpack_bytes("p.tgz", ArchiveKind::Tgz, &tgz, 500_000);
    let msg = got.expect_err("past half a megabyte");
    assert!(msg.contains("unpacks to more than 500 KB"), "{msg}");
    assert!(files_under(&dir.path().join("out")).is_empty(), "the wanted file comes after the bound");
}

/// Exactly `bound` bytes pass; one more is an error, and the failure says which error it was.
#[test]
fn the_bound_lets_exactly_its_bytes_through() {
    let failure = RefCell::new(None);
    let mut at = Watched { inner: &[7u8; 10][..], format: "tar", bound: 10, passed: 0, failure: &failure };
    assert_eq!(io::copy(&mut at, &mut io::sink()).unwrap(), 10);
    assert_eq!(*failure.borrow(), None);
    let mut past = Watched { inner: &[7u8; 10][..], format: "tar", bound: 9, passed: 0, failure: &failure };
    assert!(io::copy(&mut past, &mut io::sink()).is_err());
    assert_eq!(failure.borrow().as_deref(), Some("it unpacks to more than 9 B; refused as damaged or hostile"));
}

/// A Debian package's data.tar is read plain or gz, xz or zstd compressed (Debian's and Ubuntu's
/// dpkg), past an odd-sized control member; zstd in two frames reads as one stream.
#[test]
fn a_debian_package_of_each_compression_unpacks() {
    let tar = tar_of(&[
        ("./usr/share/doc/readme", tar::EntryType::Regular, b"docs"),
        ("./package/data/a-ubyte.gz", tar::EntryType::Regular, &gz(A)),
        ("./package/data/b-ubyte", tar::EntryType::Regular, B),
    ]);
    let zstd = |bytes: &[u8]| ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest);
    let (first, second) = tar.split_at(700);
    let two_frames = [zstd(first), zstd(second)].concat();
    for (name, data) in [
        ("data.tar", tar.clone()),
        ("data.tar.gz", gz(&tar)),
        ("data.tar.xz", xz(&tar)),
        ("data.tar.zst", zstd(&tar)),
        ("data.tar.zst", two_frames),
    ] {
        let package = deb(&[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", b"odd".to_vec()), (name, data)]);
        let (dir, got) = unpack_bytes("p.deb", ArchiveKind::Deb, &package, MAX_STREAM_BYTES);
        got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = dir.path().join("out");
        assert_eq!(files_under(&out), ["package/data/a-ubyte.gz", "package/data/b-ubyte"], "{name}");
        assert_eq!(fs::read(out.join("package/data/b-ubyte")).unwrap(), B, "{name}");
    }
}

/// What is not a Debian package, or holds no data it can read, is said so in one line.
#[test]
fn a_damaged_debian_package_is_refused_in_words() {
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("short", b"!<ar".to_vec(), "shorter than an ar archive's magic"),
        ("not ar", b"PK\x03\x04 a zip".to_vec(), "no ar archive magic"),
        ("no data", deb(&[("debian-binary", b"2.0\n".to_vec())]), "without a data.tar member"),
        ("bad header", [b"!<arch>\n".as_slice(), &[b'z'; 60]].concat(), "a damaged ar member header"),
        (
            "bad size",
            deb(&[("data.tar", Vec::new())]).iter().map(|&b| if b == b'0' { b'q' } else { b }).collect(),
            "has size",
        ),
        ("bzip2", deb(&[("data.tar.bz2", b"BZh9".to_vec())]), "(gz, xz, zst or none)"),
    ];
    for (what, bytes, expected) in cases {
        let (_dir, got) = unpack_bytes("p.deb", ArchiveKind::Deb, &bytes, MAX_STREAM_BYTES);
        let msg = got.expect_err(what);
        assert!(msg.contains(expected), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: {msg}");
    }
    let truncated = deb(&[("data.tar.xz", xz(&tar_of(&[("package/data/b-ubyte", tar::EntryType::Regular, B)])))]);
    let (_dir, got) = unpack_bytes("p.deb", ArchiveKind::Deb, &truncated[..truncated.len() - 20], MAX_STREAM_BYTES);
    let msg = got.expect_err("truncated xz");
    assert!(msg.starts_with("its xz data cannot be read: "), "{msg}");
}

/// A wheel gives its wanted files at their layout paths, and refuses one longer than its file.
#[test]
fn a_zip_gives_only_the_wanted_files_and_bounds_them() {
    let good = zip_of(&[("package/data/a-ubyte.gz", &gz(A)), ("pkg/b-ubyte", B), ("b-ubyte", B)]);
    let (dir, got) = unpack_bytes("p.whl", ArchiveKind::Zip, &good, MAX_STREAM_BYTES);
    got.unwrap();
    assert_eq!(files_under(&dir.path().join("out")), ["b-ubyte", "package/data/a-ubyte.gz"]);

    // One wanted file under several spellings counts each time towards the bound.
    let (_dir, got) = unpack_bytes("p.whl", ArchiveKind::Zip, &zip_of(&[("b-ubyte", B), ("./b-ubyte", B)]), 2 * 36);
    got.unwrap();
    let thrice = zip_of(&[("b-ubyte", B), ("./b-ubyte", B), (".//b-ubyte", B)]);
    let (_dir, got) = unpack_bytes("p.whl", ArchiveKind::Zip, &thrice, 2 * 36);
    assert_eq!(got.expect_err("three times 36 bytes"), "it unpacks to more than 72 B; refused as damaged or hostile");

    let long = zip_of(&[("b-ubyte", &[b'y'; 100])]);
    let (dir, got) = unpack_bytes("p.whl", ArchiveKind::Zip, &long, MAX_STREAM_BYTES);
    let msg = got.expect_err("longer than b-ubyte");
    assert!(msg.contains("`b-ubyte` holds more than 36 B"), "{msg}");
    assert!(files_under(&dir.path().join("out")).is_empty());
}

/// Damaged archives of every kind end in an error or in what they still hold, never in a panic
/// or a file outside the layouts: 200 seeded mutants of each (bytes changed, cut short).
#[test]
fn damaged_archives_never_panic() {
    use rand::{Rng, SeedableRng};
    let tar = tar_of(&[
        ("./package/data/a-ubyte.gz", tar::EntryType::Regular, &gz(A)),
        ("./package/data/b-ubyte", tar::EntryType::Regular, B),
        ("./other", tar::EntryType::Regular, &[3u8; 3000]),
    ]);
    let zstd = ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    let zip = zip_of(&[("package/data/b-ubyte", B)]);
    let archives = [
        (ArchiveKind::Tgz, gz(&tar)),
        (ArchiveKind::Deb, deb(&[("debian-binary", b"2.0\n".to_vec()), ("data.tar.xz", xz(&tar))])),
        (ArchiveKind::Deb, deb(&[("data.tar.zst", zstd)])),
        (ArchiveKind::Deb, deb(&[("data.tar.gz", gz(&tar))])),
        (ArchiveKind::Zip, zip),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for (kind, good) in archives {
        for _ in 0..200 {
            let mut bytes = good.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            if rng.random_bool(0.3) {
                bytes.truncate(rng.random_range(0..bytes.len()));
            }
            let (dir, got) = unpack_bytes("p", kind, &bytes, 1 << 20);
            if let Err(msg) = got {
                assert!(!msg.contains('\n'), "{kind:?}: {msg}");
            }
            for file in files_under(&dir.path().join("out")) {
                assert!(file.starts_with("package/data/") || !file.contains('/'), "{kind:?}: {file}");
            }
        }
    }
}

/// An xz block declaring a dictionary past the decoder's memory limit is refused before any
/// memory is taken for it (here 4 GiB, written into a real block header with its CRC redone).
#[test]
fn an_xz_dictionary_past_the_memory_limit_is_refused() {
    fn crc32(bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!0u32, |crc, &b| {
            (0..8).fold(crc ^ u32::from(b), |c, _| (c >> 1) ^ (0xedb8_8320 & (c & 1).wrapping_neg()))
        })
    }
    let mut data = xz(&tar_of(&[("package/data/b-ubyte", tar::EntryType::Regular, B)]));
    // After the 12-byte stream header: the block header's size, no sizes given, one filter
    // (LZMA2, id 0x21) with one property byte, the dictionary size's code.
    let header = 12..12 + (usize::from(data[12]) + 1) * 4;
    assert_eq!(&data[13..16], [0x00, 0x21, 0x01], "a one-filter block header without sizes");
    let mut block = data[header.clone()].to_vec();
    block[4] = 40;
    let crc = crc32(&block[..block.len() - 4]);
    let at = block.len() - 4;
    block[at..].copy_from_slice(&crc.to_le_bytes());
    data.splice(header, block);
    let (_dir, got) = unpack_bytes("p.deb", ArchiveKind::Deb, &deb(&[("data.tar.xz", data)]), MAX_STREAM_BYTES);
    let msg = got.expect_err("4 GiB dictionary");
    assert!(msg.starts_with("its xz data cannot be read: ") && msg.contains("mem_limit"), "{msg}");
}

/// Names longer than a header holds come as a GNU long name or a PAX path before their member,
/// read here within 64 KB: a long link between them keeps the name, a sparse member or a PAX
/// size unlike the header's is refused, and so is a longer name, which the tar crate would have
/// read whole into memory.
#[test]
fn long_names_are_read_within_their_bound() {
    use tar::EntryType::{GNULongLink, GNULongName, GNUSparse, Regular, XHeader};
    let deep = format!("{}/data", "d".repeat(150));
    let wanted = Wanted::new(&[file("a-ubyte", A), file("b-ubyte", B)], &[deep.clone(), "package/data".into()]);
    let untar_to = |tar: Vec<u8>| {
        let dir = tempfile::tempdir().expect("tempdir");
        let got = untar(&tar[..], "tar", dir.path(), &wanted, MAX_STREAM_BYTES);
        (dir, got)
    };
    let long_a = format!("{deep}/a-ubyte\0");
    let pax = |records: &[(&str, &str)]| {
        records
            .iter()
            .map(|(k, v)| {
                let body = format!(" {k}={v}\n");
                let mut len = body.len() + 1;
                while format!("{len}{body}").len() != len {
                    len += 1;
                }
                format!("{len}{body}")
            })
            .collect::<String>()
    };
    let good = tar_of(&[
        ("././@LongLink", GNULongName, long_a.as_bytes()),
        ("././@LongLink", GNULongLink, b"some/target\0"),
        ("short-a", Regular, A),
        ("pax", XHeader, pax(&[("path", "package/data/b-ubyte"), ("size", &B.len().to_string())]).as_bytes()),
        ("short-b", Regular, B),
        ("short-a", Regular, b"not wanted: the names above were for one member each"),
    ]);
    let (dir, got) = untar_to(good);
    got.unwrap();
    assert_eq!(files_under(dir.path()), [format!("{deep}/a-ubyte"), "package/data/b-ubyte".into()]);
    assert_eq!(fs::read(dir.path().join("package/data/b-ubyte")).unwrap(), B);

    let huge = "n".repeat(70_000);
    for (what, tar, expected) in [
        ("long name", tar_of(&[("././@LongLink", GNULongName, huge.as_bytes())]), "GNU long name of more than 64 KB"),
        ("PAX", tar_of(&[("pax", XHeader, pax(&[("path", &huge)]).as_bytes())]), "PAX header of more than 64 KB"),
        ("sparse", tar_of(&[("package/data/a-ubyte", GNUSparse, A)]), "GNU sparse member"),
        ("PAX size", tar_of(&[("pax", XHeader, pax(&[("size", "5")]).as_bytes()), ("x", Regular, A)]), "PAX size"),
    ] {
        let (dir, got) = untar_to(tar);
        let msg = got.expect_err(what);
        assert!(msg.contains(expected), "{what}: {msg}");
        assert!(files_under(dir.path()).is_empty(), "{what}");
    }
}

/// zstd's skippable frames, which `zstd -d` passes over, are passed over.
#[test]
fn a_skippable_zstd_frame_is_skipped() {
    let tar = tar_of(&[("package/data/b-ubyte", tar::EntryType::Regular, B)]);
    let frame = ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    let skippable = [0x184d_2a50u32.to_le_bytes().as_slice(), &4u32.to_le_bytes(), b"skip"].concat();
    let data = [skippable.clone(), frame, skippable].concat();
    let (dir, got) = unpack_bytes("p.deb", ArchiveKind::Deb, &deb(&[("data.tar.zst", data)]), MAX_STREAM_BYTES);
    got.unwrap();
    assert_eq!(files_under(&dir.path().join("out")), ["package/data/b-ubyte"]);
}

/// An error quoting an archive's own bytes comes out as one line, its control characters escaped.
#[test]
fn an_error_quoting_the_archive_is_one_printable_line() {
    let package = deb(&[("con\ntrol\x1b[31m", b"x".to_vec())]);
    let package: Vec<u8> = package.iter().enumerate().map(|(i, &b)| if i == 8 + 48 { b'z' } else { b }).collect();
    let (_dir, got) = unpack_bytes("p.deb", ArchiveKind::Deb, &package, MAX_STREAM_BYTES);
    let msg = got.expect_err("a size that is no number");
    assert_eq!(msg, "not a Debian package (ar member `con\\ntrol\\u{1b}[31m` has size `z`)");
}
