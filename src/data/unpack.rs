//! Archives unpacked in process: only the members a data set names, each bounded in size.
//!
//! npm and Debian re-pack their archives, so they carry no pinned hash and are untrusted until
//! the files taken from them pass theirs. Unpacking therefore writes nothing the data set does
//! not name: a member is written only where one of its layouts puts one of its files, at most a
//! bounded number of bytes; every other member is read past, and the whole decompressed stream
//! is bounded too, so a decompression bomb ends in an error rather than a full disk or a hang.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path};

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

use super::catalog::{ArchiveKind, FileSpec};
use crate::human::{bytes, printable_cut};

/// Decompressed bytes an archive may hold in all; the catalog's archives unpack to under 100 MB.
pub const MAX_STREAM_BYTES: u64 = 2_000_000_000;

/// Memory the xz decoder may take, in KiB: xz -9's 64 MiB dictionary with room to spare.
const XZ_MEMORY_KIB: u32 = 256 * 1024;

/// The members worth writing: each path relative to the archive's root, with its byte limit.
#[derive(Debug, Clone)]
pub struct Wanted {
    limits: BTreeMap<String, u64>,
}

impl Wanted {
    /// Each of `files` under each of `layouts`, plain or gzip'd: where `read_all` looks.
    pub fn new(files: &[FileSpec], layouts: &[String]) -> Self {
        let mut limits = BTreeMap::new();
        for layout in layouts {
            let dir = layout.trim_matches('/');
            let under = |name: String| if dir.is_empty() { name } else { format!("{dir}/{name}") };
            for f in files {
                limits.insert(under(f.name.clone()), f.size);
                limits.insert(under(format!("{}.gz", f.name)), f.max_gz_size());
            }
        }
        Self { limits }
    }

    /// The relative path and byte limit of the member named `name`, if it is wanted. A `..`
    /// anywhere makes it unwanted; a leading `/` or `./` is dropped, as tar does.
    fn get(&self, name: &Path) -> Option<(&str, u64)> {
        let mut parts = Vec::new();
        for part in name.components() {
            match part {
                Component::Normal(p) => parts.push(p.to_str()?),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        self.limits.get_key_value(parts.join("/").as_str()).map(|(k, v)| (k.as_str(), *v))
    }
}

/// Unpacks the wanted members of `archive` into `dest`, under their relative paths.
///
/// Errors are one line without the archive's name, which the caller puts in front.
pub fn unpack(archive: &Path, kind: ArchiveKind, dest: &Path, wanted: &Wanted) -> Result<(), String> {
    unpack_within(archive, kind, dest, wanted, MAX_STREAM_BYTES)
}

/// [`unpack`] with the bound on the decompressed stream given.
fn unpack_within(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
    wanted: &Wanted,
    max_stream: u64,
) -> Result<(), String> {
    unpack_kind(archive, kind, dest, wanted, max_stream).map_err(|e| one_line(&e))
}

/// An error that may quote the archive's own bytes (a member's name, a header field) as one line
/// safe to print: the caller lists it among the sources tried.
fn one_line(text: &str) -> String {
    printable_cut(text, 400).replace('\n', "\\n").replace('\t', "\\t")
}

fn unpack_kind(archive: &Path, kind: ArchiveKind, dest: &Path, wanted: &Wanted, max_stream: u64) -> Result<(), String> {
    let file = File::open(archive).map_err(|e| format!("cannot open it: {e}"))?;
    match kind {
        ArchiveKind::Tgz => untar(flate2::read::MultiGzDecoder::new(BufReader::new(file)), dest, wanted, max_stream),
        ArchiveKind::Deb => {
            let (name, data) = deb_data(file)?;
            let data = BufReader::new(data);
            match name.strip_prefix("data.tar").unwrap_or_default() {
                "" => untar(data, dest, wanted, max_stream),
                ".gz" => untar(flate2::read::MultiGzDecoder::new(data), dest, wanted, max_stream),
                ".xz" => {
                    let xz = lzma_rust2::XzReader::new_mem_limit(data, true, XZ_MEMORY_KIB);
                    untar(xz, dest, wanted, max_stream)
                }
                ".zst" => untar(ZstdFrames::new(data), dest, wanted, max_stream),
                _ => Err(format!("its `{name}` is compressed in a way cfrun does not read (gz, xz, zst or none)")),
            }
        }
        ArchiveKind::Zip => unzip(file, dest, wanted),
    }
}

/// Writes the wanted regular files of a tar stream; links, devices and folders are read past.
fn untar(stream: impl Read, dest: &Path, wanted: &Wanted, max_stream: u64) -> Result<(), String> {
    let past_bound = Cell::new(false);
    let bounded = Bounded { inner: stream, left: max_stream, past_bound: &past_bound };
    let result = untar_bounded(bounded, dest, wanted);
    if past_bound.get() {
        return Err(format!("it unpacks to more than {}; refused as damaged or hostile", bytes(max_stream)));
    }
    result
}

fn untar_bounded(stream: impl Read, dest: &Path, wanted: &Wanted) -> Result<(), String> {
    let mut tar = tar::Archive::new(stream);
    let entries = tar.entries().map_err(|e| format!("not a readable tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("a tar member is unreadable: {e}"))?;
        if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let name = entry.path().map_err(|e| format!("a tar member's name is unreadable: {e}"))?.into_owned();
        let Some((relative, limit)) = wanted.get(&name) else {
            continue;
        };
        if entry.size() > limit {
            return Err(too_big(relative, limit));
        }
        write_member(&mut entry, dest, relative, limit)?;
    }
    // Read to the end as `tar xzf` does, so a stream cut or damaged after its last member (a
    // checksum, a footer) is an error too, though the members passed.
    io::copy(&mut tar.into_inner(), &mut io::sink())
        .map_err(|e| format!("its stream is damaged or cut short after the last member ({e})"))?;
    Ok(())
}

/// Writes the wanted files of a zip; members not wanted are never decompressed.
fn unzip(file: File, dest: &Path, wanted: &Wanted) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a readable zip: {e}"))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("member {i} is unreadable: {e}"))?;
        if !entry.is_file() {
            continue;
        }
        // enclosed_name refuses `..` and absolute names, as `Wanted::get` does.
        let Some((relative, limit)) = entry.enclosed_name().and_then(|name| wanted.get(&name)) else {
            continue;
        };
        if entry.size() > limit {
            return Err(too_big(relative, limit));
        }
        write_member(&mut entry, dest, relative, limit)?;
    }
    Ok(())
}

/// Copies one member to `dest/relative`, refusing it past `limit` bytes whatever its header said.
fn write_member(member: &mut impl Read, dest: &Path, relative: &str, limit: u64) -> Result<(), String> {
    let target = dest.join(relative);
    if let Some(folder) = target.parent() {
        fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    }
    let mut out = File::create(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let copied =
        io::copy(&mut member.take(limit + 1), &mut out).map_err(|e| format!("cannot unpack its `{relative}`: {e}"))?;
    if copied > limit {
        drop(out);
        let _ = fs::remove_file(&target);
        return Err(too_big(relative, limit));
    }
    Ok(())
}

fn too_big(relative: &str, limit: u64) -> String {
    format!("its `{relative}` holds more than {}, more than the file it should be; refused", bytes(limit))
}

/// The `data.tar*` member of a Debian package (an `ar` archive): its name and its bytes.
fn deb_data(mut file: File) -> Result<(String, io::Take<File>), String> {
    const NOT_DEB: &str = "not a Debian package";
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(|_| format!("{NOT_DEB} (shorter than an ar archive's magic)"))?;
    if &magic != b"!<arch>\n" {
        return Err(format!("{NOT_DEB} (no ar archive magic)"));
    }
    loop {
        let mut header = [0u8; 60];
        match file.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err("a Debian package without a data.tar member".into());
            }
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
        let text = |range: std::ops::Range<usize>| std::str::from_utf8(&header[range]).ok().map(str::trim_end);
        let (Some(name), Some(size), b"`\n") = (text(0..16), text(48..58), &header[58..60]) else {
            return Err(format!("{NOT_DEB} (a damaged ar member header)"));
        };
        // GNU ar ends a name with '/'; dpkg pads with spaces only.
        let name = name.trim_end_matches('/').to_string();
        let size: u64 = size.parse().map_err(|_| format!("{NOT_DEB} (ar member `{name}` has size `{size}`)"))?;
        if name.starts_with("data.tar") {
            return Ok((name, file.take(size)));
        }
        // Members start on even offsets; ten decimal digits always fit an i64.
        file.seek(SeekFrom::Current((size + size % 2) as i64)).map_err(|e| format!("cannot read it: {e}"))?;
    }
}

/// A zstd stream of one frame or several in a row, read as `zstd -d` reads it; the decoder's
/// window is bounded by ruzstd's default limit (128 MiB).
struct ZstdFrames<R: BufRead> {
    source: Option<R>,
    frame: Option<StreamingDecoder<R, FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        Self { source: Some(source), frame: None }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.source = self.frame.take().map(StreamingDecoder::into_inner);
            }
            let Some(mut source) = self.source.take() else {
                return Ok(0);
            };
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame = Some(StreamingDecoder::new(source).map_err(io::Error::other)?);
        }
    }
}

/// A reader that fails once more than `left` bytes have come through, and says so in a flag
/// (the tar reader wraps errors in its own words).
struct Bounded<'a, R> {
    inner: R,
    left: u64,
    past_bound: &'a Cell<bool>,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the bound tells a stream that ends exactly there from one that goes on.
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.past_bound.set(true);
            return Err(io::Error::other("the archive unpacks past its bound"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
