//! This machine's copies of the stage manifests it last read or wrote.
//!
//! A manifest names every file of a stage: 640 KB at 2,000 files, 3.2 MB at 10,000.
//! Most runs from one machine (a developer's previews, a CI runner that keeps its
//! cache) find the manifest exactly as they left it, so [`crate::store::Bucket`]
//! asks the server for its version (one HEAD, no body) and reads the bytes from here
//! when it is the version kept; otherwise it GETs them as before. The server's ETag
//! decides, the same version every manifest write is conditional on, so a copy is
//! never used once another run changed the manifest.
//!
//! Best effort throughout: a directory that cannot be written, or a copy that is
//! damaged, only means the manifest is fetched. Files are written whole and renamed
//! into place, so a run that dies never leaves half a copy.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::local::to_hex;

/// The first line of a copy: format, then the ETag and the SHA-256 of the bytes.
const MAGIC: &str = "uploader-manifest-copy-1";

/// Where the copies live, and which server they came from.
#[derive(Debug, Clone)]
pub struct ManifestCache {
    dir: PathBuf,
    /// The server (its endpoint, or AWS and the region): the same bucket name on
    /// another server is another object.
    server: String,
}

/// A copy as kept: the version it was, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub etag: String,
    pub bytes: Vec<u8>,
}

impl ManifestCache {
    pub fn new(dir: impl Into<PathBuf>, server: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            server: server.into(),
        }
    }

    /// The default directory: `$XDG_CACHE_HOME/uploader`, else `~/.cache/uploader`;
    /// `None` when neither is known.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })?;
        Some(base.join("uploader"))
    }

    /// The file of `bucket`/`key`: named by a hash of the server, bucket and key, so
    /// any key makes a plain file name.
    fn path(&self, bucket: &str, key: &str) -> PathBuf {
        let mut h = Sha256::new();
        for part in [self.server.as_str(), bucket, key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let id = to_hex(&h.finalize());
        self.dir
            .join("manifests")
            .join(format!("{}.json", &id[..32]))
    }

    /// Whether a copy of `bucket`/`key` is kept (intact or not).
    pub fn has(&self, bucket: &str, key: &str) -> bool {
        self.path(bucket, key).is_file()
    }

    /// The copy of `bucket`/`key`, if one is kept and intact.
    pub fn load(&self, bucket: &str, key: &str) -> Option<Copy> {
        let path = self.path(bucket, key);
        let raw = std::fs::read(&path).ok()?;
        let copy = parse(&raw);
        if copy.is_none() {
            tracing::debug!(path = %path.display(), "ignoring a damaged manifest copy");
        }
        copy
    }

    /// Keeps `bytes` as version `etag` of `bucket`/`key`. Failures are logged (debug)
    /// and otherwise ignored: the next run fetches the manifest.
    pub fn store(&self, bucket: &str, key: &str, etag: &str, bytes: &[u8]) {
        if etag.is_empty() || etag.contains(['\n', ' ']) {
            return;
        }
        let path = self.path(bucket, key);
        if let Err(e) = write_atomically(&path, etag, bytes) {
            tracing::debug!(path = %path.display(), "could not keep a copy of the manifest: {e}");
        }
    }
}

fn parse(raw: &[u8]) -> Option<Copy> {
    let end = raw.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&raw[..end]).ok()?;
    let mut fields = header.split(' ');
    let (magic, etag, sha256) = (fields.next()?, fields.next()?, fields.next()?);
    let bytes = &raw[end + 1..];
    (magic == MAGIC && fields.next().is_none() && to_hex(&Sha256::digest(bytes)) == sha256).then(
        || Copy {
            etag: etag.to_owned(),
            bytes: bytes.to_vec(),
        },
    )
}

fn write_atomically(path: &Path, etag: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A name no other run writes at the same time; renamed over the copy when whole.
    let tmp = path.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        let sha256 = to_hex(&Sha256::digest(bytes));
        file.write_all(format!("{MAGIC} {etag} {sha256}\n").as_bytes())?;
        file.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_comes_back_as_kept_and_is_per_server_bucket_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ManifestCache::new(dir.path(), "http://127.0.0.1:9000");
        assert_eq!(cache.load("b", "k"), None);
        cache.store("b", "k", "abc123", b"{\"v\":1}");
        let copy = cache.load("b", "k").unwrap();
        assert_eq!(
            (copy.etag.as_str(), copy.bytes.as_slice()),
            ("abc123", &b"{\"v\":1}"[..])
        );
        // A newer version replaces the older one.
        cache.store("b", "k", "def456", b"{\"v\":2}");
        assert_eq!(cache.load("b", "k").unwrap().etag, "def456");
        // Another key, bucket or server has no copy.
        assert_eq!(cache.load("b", "other"), None);
        assert_eq!(cache.load("other", "k"), None);
        let elsewhere = ManifestCache::new(dir.path(), "http://127.0.0.1:9001");
        assert_eq!(elsewhere.load("b", "k"), None);
    }

    #[test]
    fn a_damaged_copy_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ManifestCache::new(dir.path(), "s");
        cache.store("b", "k", "abc123", b"{\"v\":1}");
        let path = cache.path("b", "k");
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 2;
        raw[last] = b'9';
        std::fs::write(&path, &raw).unwrap();
        assert_eq!(
            cache.load("b", "k"),
            None,
            "bytes that are not the hashed ones"
        );
        std::fs::write(&path, b"abc123").unwrap();
        assert_eq!(cache.load("b", "k"), None, "no header");
    }

    #[test]
    fn versions_that_cannot_be_compared_and_unwritable_places_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ManifestCache::new(dir.path(), "s");
        cache.store("b", "k", "", b"{}");
        assert_eq!(cache.load("b", "k"), None, "a server that sends no ETag");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let blocked = ManifestCache::new(&file, "s");
        blocked.store("b", "k", "abc", b"{}");
        assert_eq!(blocked.load("b", "k"), None);
    }
}
