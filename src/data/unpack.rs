//! Archives unpacked in process: only the members a data set names, each bounded in size.
//!
//! npm and Debian re-pack their archives, so they carry no pinned hash and are untrusted until
//! the files taken from them pass theirs. Unpacking therefore writes nothing the data set does
//! not name: a member is written only where one of its layouts puts one of its files, at most a
//! bounded number of bytes; every other member is read past, and the whole decompressed stream
//! is bounded too, so a decompression bomb ends in an error rather than a full disk or a hang.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use super::catalog::{ArchiveKind, FileSpec};
use crate::human::{bytes, printable_cut};

/// Decompressed bytes an archive may hold in all; the catalog's archives unpack to under 100 MB.
const MAX_STREAM_BYTES: u64 = 2_000_000_000;

/// The most bytes a GNU long name or a PAX header may hold: the tar crate would read either
/// whole into memory, so they are read here, raw, within this (PATH_MAX is 4,096).
const MAX_EXTENSION_BYTES: u64 = 64_000;

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
        ArchiveKind::Tgz => {
            untar(flate2::read::MultiGzDecoder::new(BufReader::new(file)), "gzip", dest, wanted, max_stream)
        }
        ArchiveKind::Deb => {
            let (name, data) = deb_data(file)?;
            let data = BufReader::new(data);
            match name.strip_prefix("data.tar").unwrap_or_default() {
                "" => untar(data, "tar", dest, wanted, max_stream),
                ".gz" => untar(flate2::read::MultiGzDecoder::new(data), "gzip", dest, wanted, max_stream),
                ".xz" => {
                    let xz = lzma_rust2::XzReader::new_mem_limit(data, true, XZ_MEMORY_KIB);
                    untar(xz, "xz", dest, wanted, max_stream)
                }
                ".zst" => untar(ZstdFrames::new(data), "zstd", dest, wanted, max_stream),
                _ => Err(format!("its `{name}` is compressed in a way cfrun does not read (gz, xz, zst or none)")),
            }
        }
        ArchiveKind::Zip => unzip(file, dest, wanted, max_stream),
    }
}

/// Writes the wanted regular files of a tar stream (`format` names its compression for errors);
/// links, devices and folders are read past.
fn untar(stream: impl Read, format: &str, dest: &Path, wanted: &Wanted, max_stream: u64) -> Result<(), String> {
    let failure = RefCell::new(None);
    let watched = Watched { inner: stream, format, bound: max_stream, passed: 0, failure: &failure };
    let result = untar_bounded(watched, dest, wanted);
    // The tar reader words a failure of the stream under it as its own: say what failed.
    match failure.into_inner() {
        Some(why) => Err(why),
        None => result,
    }
}

fn untar_bounded(stream: impl Read, dest: &Path, wanted: &Wanted) -> Result<(), String> {
    let mut tar = tar::Archive::new(stream);
    let entries = tar.entries().map_err(|e| format!("not a readable tar: {e}"))?.raw(true);
    // A GNU long name or a PAX header describes the member after it.
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_size: Option<u64> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("a tar member is unreadable: {e}"))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::GNULongName => {
                let mut name = read_extension(&mut entry, "GNU long name")?;
                while name.last() == Some(&0) {
                    name.pop();
                }
                long_name = Some(name);
                continue;
            }
            tar::EntryType::XHeader => {
                let records = read_extension(&mut entry, "PAX header")?;
                for record in tar::PaxExtensions::new(&records) {
                    let record = record.map_err(|e| format!("a PAX header is unreadable: {e}"))?;
                    match record.key_bytes() {
                        b"path" => long_name = Some(record.value_bytes().to_vec()),
                        b"size" => pax_size = record.value().ok().and_then(|v| v.parse().ok()),
                        _ => {}
                    }
                }
                continue;
            }
            // A link's long target, and PAX settings for every member: nothing a file needs.
            tar::EntryType::GNULongLink | tar::EntryType::XGlobalHeader => continue,
            // Its map of holes comes in blocks after the header that raw reading takes for data.
            tar::EntryType::GNUSparse => return Err("it holds a GNU sparse member, which cfrun does not read".into()),
            _ => {}
        }
        let (name, size) = (long_name.take(), pax_size.take());
        // Only a member past 8 GiB needs a PAX size; raw reading goes by the header's.
        if size.is_some_and(|s| s != entry.size()) {
            return Err("a member's PAX size differs from its header's, which cfrun does not read".into());
        }
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let name = match name {
            Some(bytes) => PathBuf::from(OsString::from_vec(bytes)),
            None => entry.path().map_err(|e| format!("a tar member's name is unreadable: {e}"))?.into_owned(),
        };
        let Some((relative, limit)) = wanted.get(&name) else {
            continue;
        };
        let declared = entry.size();
        write_member(&mut entry, declared, dest, relative, limit)?;
    }
    // Read to the end as `tar xzf` does, so a stream cut or damaged after its last member (a
    // checksum, a footer) is an error too, though the members passed; `Watched` words it.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(|e| e.to_string())?;
    Ok(())
}

/// The body of a GNU long name or a PAX header, refused past [`MAX_EXTENSION_BYTES`].
fn read_extension(entry: &mut impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    entry
        .take(MAX_EXTENSION_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("a tar {what} is unreadable: {e}"))?;
    if body.len() as u64 > MAX_EXTENSION_BYTES {
        return Err(format!("it holds a {what} of more than {}; refused", bytes(MAX_EXTENSION_BYTES)));
    }
    Ok(body)
}

/// Writes the wanted files of a zip; members not wanted are never decompressed, and those that
/// are count towards `max_stream` (a name listed many times would otherwise be written as often).
fn unzip(file: File, dest: &Path, wanted: &Wanted, max_stream: u64) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a readable zip: {e}"))?;
    let mut unpacked = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("member {i} is unreadable: {e}"))?;
        if !entry.is_file() {
            continue;
        }
        // enclosed_name refuses `..` and absolute names, as `Wanted::get` does.
        let Some((relative, limit)) = entry.enclosed_name().and_then(|name| wanted.get(&name)) else {
            continue;
        };
        let declared = entry.size();
        unpacked += write_member(&mut entry, declared, dest, relative, limit)?;
        if unpacked > max_stream {
            return Err(past_bound(max_stream));
        }
    }
    Ok(())
}

/// Copies one member to `dest/relative`, refusing it past `limit` bytes: before writing where its
/// header `declared` more, and whatever its header said; returns its length.
fn write_member(member: &mut impl Read, declared: u64, dest: &Path, relative: &str, limit: u64) -> Result<u64, String> {
    if declared > limit {
        return Err(too_big(relative, limit));
    }
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
    Ok(copied)
}

fn past_bound(bound: u64) -> String {
    format!("it unpacks to more than {}; refused as damaged or hostile", bytes(bound))
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

/// A zstd stream of frames in a row, skippable frames among them, read as `zstd -d` reads it;
/// the decoder's window is bounded by ruzstd's default limit (128 MiB).
struct ZstdFrames<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        Self { source, decoder: FrameDecoder::new(), in_frame: false }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.in_frame {
                while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                }
                let n = self.decoder.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a skippable frame is cut short"));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// The decompressed stream under the tar reader: it fails once more than `bound` bytes have
/// come through, and it keeps what went wrong under the tar reader, in words, for [`untar`].
struct Watched<'a, R> {
    inner: R,
    format: &'a str,
    bound: u64,
    passed: u64,
    failure: &'a RefCell<Option<String>>,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the bound tells a stream that ends exactly there from one that goes on.
        let room = (self.bound - self.passed).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want]).inspect_err(|e| {
            self.failure.replace(Some(format!("its {} data cannot be read: {e}", self.format)));
        })?;
        if self.passed + n as u64 > self.bound {
            self.failure.replace(Some(past_bound(self.bound)));
            return Err(io::Error::other("the archive unpacks past its bound"));
        }
        self.passed += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
