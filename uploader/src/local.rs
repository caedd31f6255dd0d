//! The local side: walk `dist/` and fingerprint every file.
//!
//! Content is hashed with SHA-256 while streaming, so a 1 GiB bundle never sits in
//! memory. Small files (most of a site) are read whole instead and their bytes kept,
//! up to a budget: the upload then sends exactly the bytes that were hashed, without
//! opening the file a second time. Dot-folders such as `.well-known/` are part of the site and are included.
//! A symlink is followed only while it stays inside `dist/`: one that leaves it would
//! publish a file nobody meant to publish.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "{0} does not exist; build the site first (`trunk build --release`) or pass the right folder with --dist"
    )]
    Missing(PathBuf),
    #[error("{0} is not a directory; pass the build output folder with --dist")]
    NotADirectory(PathBuf),
    #[error("{0} is empty; build the site first (`trunk build --release`)")]
    Empty(PathBuf),
    #[error(
        "{link} is a symlink to {target}, outside {root}; copy the file into the build output instead of linking it"
    )]
    SymlinkEscapes {
        link: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    #[error(
        "{0}: `_uploader/` is where the uploader keeps its records; rename or remove that folder from the build output"
    )]
    Reserved(String),
    #[error("{0}: file name is not valid UTF-8; rename it (S3 keys are UTF-8)")]
    NonUtf8(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file of the build output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Path relative to `dist/`, `/`-separated: the key suffix under the stage prefix.
    pub path: String,
    pub abs: PathBuf,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// The content itself, for a file small enough to keep (see [`KEEP_FILE_MAX`]):
    /// the very bytes `sha256` was computed over.
    pub body: Option<Bytes>,
}

/// Files up to this size are read whole while hashing and kept for the upload.
pub const KEEP_FILE_MAX: u64 = 256 * 1024;
/// At most this many bytes of file content are kept in memory per run; files beyond
/// it are streamed (and read again when uploaded), so memory stays bounded.
pub const KEEP_BUDGET: u64 = 32 * 1024 * 1024;

/// Walks `root` and returns its files sorted by path, small files with their bytes.
#[cfg(test)]
pub fn scan(root: &Path) -> Result<Vec<LocalFile>, LocalError> {
    scan_keeping(root, &AtomicBool::new(true))
}

/// [`scan`], keeping small files' bytes only while `keep` is set: the caller may
/// turn it on (or off) while the scan runs, as soon as it knows whether the bytes
/// will be sent. Keeping 10,000 small files costs a no-op deploy, which sends none,
/// about a sixth of its time (the memory is new and must be mapped); a first deploy,
/// which sends them all, saves reading every file a second time.
pub fn scan_keeping(root: &Path, keep: &AtomicBool) -> Result<Vec<LocalFile>, LocalError> {
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LocalError::Missing(root.to_owned()),
        _ => LocalError::Io {
            path: root.to_owned(),
            source: e,
        },
    })?;
    if !meta.is_dir() {
        return Err(LocalError::NotADirectory(root.to_owned()));
    }
    let canonical_root = std::fs::canonicalize(root).map_err(|source| LocalError::Io {
        path: root.to_owned(),
        source,
    })?;

    // The walk feeds the hashing threads as it goes: hashing starts with the first
    // file found instead of after the last.
    let started = std::time::Instant::now();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = std::sync::mpsc::channel::<(String, PathBuf)>();
    let rx = Mutex::new(rx);
    let (failed, kept) = (AtomicBool::new(false), AtomicU64::new(0));
    let (walked, hashed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| hash_from(&rx, &kept, keep, &failed)))
            .collect();
        let walked = walk(root, &canonical_root, |path, abs| {
            !failed.load(Ordering::Relaxed) && tx.send((path, abs)).is_ok()
        });
        drop(tx);
        if walked.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        tracing::debug!(
            ms = crate::progress::ms(started),
            "timing: walked the build output"
        );
        let mut files = Vec::new();
        let mut error = None;
        for h in handles {
            match h.join() {
                Ok(Ok(part)) => files.extend(part),
                Ok(Err(e)) => {
                    error.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (walked, error.map_or(Ok(files), Err))
    });
    // What is wrong with the build output itself is the error to report first.
    walked?;
    let mut files = hashed?;
    if files.is_empty() {
        return Err(LocalError::Empty(root.to_owned()));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    tracing::debug!(
        ms = crate::progress::ms(started),
        files = files.len(),
        "timing: walked and hashed every file"
    );
    Ok(files)
}

/// Walks `root` and hands every file to `emit` (its key and its path), refusing what
/// must not be published; stops early when `emit` says so. In the order the file
/// system lists folders: the caller sorts the result, and sorting every folder by
/// name on the way was a few per cent of a no-op deploy.
fn walk(
    root: &Path,
    canonical_root: &Path,
    mut emit: impl FnMut(String, PathBuf) -> bool,
) -> Result<(), LocalError> {
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_owned)
                .unwrap_or_else(|| root.to_owned());
            LocalError::Io {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("symlink loop in the build output")),
            }
        })?;
        if entry.path_is_symlink() {
            let target = std::fs::canonicalize(entry.path()).map_err(|source| LocalError::Io {
                path: entry.path().to_owned(),
                source,
            })?;
            if !target.starts_with(canonical_root) {
                return Err(LocalError::SymlinkEscapes {
                    link: entry.path().to_owned(),
                    target,
                    root: root.to_owned(),
                });
            }
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root");
        let path = rel_key(rel).ok_or_else(|| LocalError::NonUtf8(entry.path().to_owned()))?;
        if path.starts_with(crate::state::Keys::ROOT) {
            return Err(LocalError::Reserved(path));
        }
        if !emit(path, entry.path().to_owned()) {
            break;
        }
    }
    Ok(())
}

/// One hashing thread: fingerprints files as the walk finds them, until the walk is
/// done or anything failed (`failed`, shared by the walk and every hashing thread).
/// A small file's bytes are kept while `kept` leaves room (see [`KEEP_BUDGET`]), read
/// into blocks of [`BLOCK_SIZE`] that its body is then a slice of: one allocation per
/// block, not one per file, which on a no-op deploy (where none is sent) is most of
/// what keeping them costs.
fn hash_from(
    found: &Mutex<Receiver<(String, PathBuf)>>,
    kept: &AtomicU64,
    keep: &AtomicBool,
    failed: &AtomicBool,
) -> Result<Vec<LocalFile>, LocalError> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut done = Vec::new();
    let mut block = Block::default();
    while !failed.load(Ordering::Relaxed) {
        let next = match found.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        let Ok((path, abs)) = next else {
            break;
        };
        let budget = keep.load(Ordering::Relaxed).then_some(kept);
        match fingerprint(&abs, &mut buf, budget, &mut block, done.len()) {
            Ok((sha256, size)) => {
                done.push(LocalFile {
                    path,
                    abs,
                    size,
                    sha256,
                    body: None,
                });
                // No room left for the largest file kept: the next block.
                if block.bytes.len() + KEEP_FILE_MAX as usize >= BLOCK_SIZE {
                    block.flush(&mut done);
                }
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    block.flush(&mut done);
    Ok(done)
}

/// Small files' bytes, read back to back; `files` says which file (by its index in
/// the thread's results) is which range, until [`Block::flush`] hands out the slices.
#[derive(Default)]
struct Block {
    bytes: Vec<u8>,
    files: Vec<(usize, std::ops::Range<usize>)>,
}

/// The size of the blocks small files are read into (a block is closed once the
/// largest file kept might not fit, so it may end up somewhat larger).
const BLOCK_SIZE: usize = 1024 * 1024;

impl Block {
    /// Gives every file read into the block its body, and starts a new block.
    fn flush(&mut self, done: &mut [LocalFile]) {
        let shared = Bytes::from(std::mem::take(&mut self.bytes));
        for (i, range) in self.files.drain(..) {
            if let Some(file) = done.get_mut(i) {
                file.body = Some(shared.slice(range));
            }
        }
    }
}

fn rel_key(rel: &Path) -> Option<String> {
    // Where `/` is the separator the relative path already is the key (walkdir joins
    // each name to its folder, so there is nothing to normalise).
    if std::path::MAIN_SEPARATOR == '/' {
        return rel.to_str().map(str::to_owned);
    }
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/"))
}

const BUF_SIZE: usize = 128 * 1024;

/// SHA-256 of one file: read whole into `block` (as file `index` of this thread) when
/// bytes are being kept, it is small and `kept` (bytes kept so far, shared by the
/// hashing threads) leaves room under [`KEEP_BUDGET`], else streamed through the
/// caller's buffer. Returns (hex digest, size).
fn fingerprint(
    path: &Path,
    buf: &mut [u8],
    kept: Option<&AtomicU64>,
    block: &mut Block,
    index: usize,
) -> Result<(String, u64), LocalError> {
    let io = |source| LocalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    // The size is asked for only when bytes are being kept (a no-op keeps none).
    let room = match kept {
        Some(kept) => {
            let len = file.metadata().map_err(io)?.len();
            len <= KEEP_FILE_MAX
                && kept
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
                        (k + len <= KEEP_BUDGET).then_some(k + len)
                    })
                    .is_ok()
        }
        None => false,
    };
    if !room {
        return digest_reader::<Sha256>(&mut file, buf).map_err(io);
    }
    if block.bytes.capacity() == 0 {
        block.bytes.reserve(BLOCK_SIZE);
    }
    let start = block.bytes.len();
    // Read to the end, whatever the size said: a file that grew is read whole.
    file.read_to_end(&mut block.bytes).map_err(io)?;
    let range = start..block.bytes.len();
    let sha256 = to_hex(&Sha256::digest(&block.bytes[range.clone()]));
    let size = range.len() as u64;
    block.files.push((index, range));
    Ok((sha256, size))
}

/// Streams a file through MD5 (what an S3 ETag of a single-part upload is); only
/// `--verify` needs it, for manifests that did not record it.
pub fn md5_file(path: &Path) -> Result<String, LocalError> {
    digest_with::<md5::Md5>(path, &mut vec![0u8; BUF_SIZE]).map(|(hex, _)| hex)
}

/// Streams a file through a digest; returns (hex digest, size).
fn digest_with<D: Digest>(path: &Path, buf: &mut [u8]) -> Result<(String, u64), LocalError> {
    let io = |source| LocalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    digest_reader::<D>(&mut file, buf).map_err(io)
}

/// Streams a reader through a digest; returns (hex digest, size).
fn digest_reader<D: Digest>(
    reader: &mut impl Read,
    buf: &mut [u8],
) -> std::io::Result<(String, u64)> {
    let mut hasher = D::new();
    let mut size = 0u64;
    loop {
        let n = reader.read(buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((to_hex(&hasher.finalize()), size))
}

/// SHA-256 of bytes already in memory (small generated files such as `config.json`).
pub fn hash_bytes(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest. (`hex::encode` goes through a `char` iterator, which
/// is most of the cost of naming 10,000 files' hashes.)
pub fn to_hex(digest: &[u8]) -> String {
    let mut out = vec![0u8; digest.len() * 2];
    match hex::encode_to_slice(digest, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => hex::encode(digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_matches_the_hex_crate() {
        let digest = Sha256::digest(b"todo");
        assert_eq!(to_hex(&digest), hex::encode(digest));
        assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(to_hex(&[]), "");
    }

    fn write(root: &Path, rel: &str, body: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn scans_nested_and_dot_folders_with_hashes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "index.html", b"<html></html>");
        write(dir.path(), ".well-known/security.txt", b"Contact: x");
        write(dir.path(), "a b/ü+&=.txt", b"");
        let files = scan(dir.path()).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [".well-known/security.txt", "a b/ü+&=.txt", "index.html"]
        );
        assert_eq!(files[1].size, 0);
        // Small files come with the bytes that were hashed.
        assert_eq!(files[2].body.as_deref(), Some(&b"<html></html>"[..]));
        assert_eq!(
            files[1].sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// Only small files are kept in memory: a large one is streamed, and read again
    /// (and checked against its hash) when it is uploaded.
    #[test]
    fn small_files_keep_their_bytes_large_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let large = vec![7u8; KEEP_FILE_MAX as usize + 1];
        write(dir.path(), "big.bin", &large);
        write(dir.path(), "small.txt", b"small");
        let files = scan(dir.path()).unwrap();
        assert_eq!(files[0].path, "big.bin");
        assert_eq!(files[0].body, None);
        assert_eq!(files[0].sha256, hash_bytes(&large));
        assert_eq!(files[1].body.as_deref(), Some(&b"small"[..]));
        assert_eq!(files[1].sha256, hash_bytes(b"small"));
    }

    #[test]
    fn missing_and_empty_dist_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = scan(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("trunk build"),
            "{err}"
        );
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_leaving_dist_is_refused_inside_is_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", b"secret");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "index.html", b"x");
        std::os::unix::fs::symlink(dir.path().join("index.html"), dir.path().join("alias.html"))
            .unwrap();
        assert_eq!(scan(dir.path()).unwrap().len(), 2);
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            dir.path().join("leak.txt"),
        )
        .unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("leak.txt") && err.contains("outside"), "{err}");
    }
}
