//! A stage's manifest and release records, read and written in one place.
//!
//! The policies: a normal run trusts the manifest (one small GET); `--verify`, a
//! missing manifest, or one a crashed run left marked make the run list the prefix and
//! drop what drifted ([`load_state`]). An unreadable manifest, or one written by a
//! newer uploader, is never replaced silently: every command refuses (exit 3) and
//! names the repair, `--verify`, which rebuilds it from a listing and the history from
//! the release records ([`recover`]) — a newer format is refused even then. Records are JSON, stored
//! `no-store` next to the site, outside the served prefix ([`crate::state::Keys`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use crate::Error;
use crate::config::Stage;
use crate::plan::{Desired, Source};
use crate::release::ReleaseError;
use crate::state::{HistoryEntry, Keys, ObjectEntry, Release, STATE_VERSION, StageState};
use crate::store::{Bucket, Listed, StoreError, is_plain_md5};

/// What [`load_state`] read: the manifest as stored and, when it listed, the listing.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    stored: Option<Arc<StageState>>,
    listing: Option<Vec<crate::store::Listed>>,
    version: Version,
}

impl Seen {
    /// The version of the manifest that was read, for [`write_state`].
    pub fn version(&self) -> Version {
        self.version.clone()
    }

    /// Whether the manifest at `key` is still what was read (one HEAD): the same
    /// ETag, or still none. An unreadable manifest, or one stored without an ETag,
    /// never counts as unchanged.
    async fn is_current(&self, bucket: &Bucket, key: &str) -> Result<bool, StoreError> {
        let now = bucket.version_of(key).await?;
        Ok(match (&self.version.0, &self.stored) {
            (None, _) => now.is_none(),
            (Some(read), Some(_)) => !read.is_empty() && now.as_deref() == Some(read.as_str()),
            (Some(_), None) => false,
        })
    }
}

/// The version of a stage's manifest a run last read or wrote: its ETag, or `None`
/// when there was no manifest. Every manifest write is conditional on it, so a run
/// that lost the stage (its lock taken over before it noticed) cannot overwrite what
/// the new holder wrote: its write fails instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version(Option<String>);

/// What a run knew of the stage's manifest before [`load_state`].
pub enum Before {
    /// Nothing: read it now.
    Nothing,
    /// Its read started earlier ([`EarlyRead`]): take that answer.
    Started(EarlyRead),
    /// What an earlier pass of the same run read ([`Seen`]).
    Read(Seen),
}

/// Reads the stage's manifest; lists the prefix instead of trusting it when asked to,
/// when it is missing or unreadable, or when a crashed run left it marked.
/// Returns the state to plan from, how many objects drifted, and what was read.
///
/// When `before` is what a previous call of the same run read and the stored manifest
/// has not changed since, its listing is reused instead of listing a large prefix twice.
pub async fn load_state(
    bucket: &Bucket,
    keys: &Keys,
    stage: &Stage,
    verify: bool,
    desired: &[Desired],
    before: Before,
) -> Result<(Arc<StageState>, usize, Seen), Error> {
    let (stored, rebuild, version, earlier_listing) = match before {
        Before::Nothing => {
            let read = fetch_parsed(bucket, &keys.state(), &stage.name).await?;
            let (stored, rebuild, version) = settle(read, stage, verify)?;
            (stored, rebuild, version, None)
        }
        Before::Started(early) => {
            let (stored, rebuild, version) = settle(early.answer().await?, stage, verify)?;
            (stored, rebuild, version, None)
        }
        // A second read in the same run (under the lock) asks only for the manifest's
        // version: most often no other run wrote in between, and then what the first
        // read parsed is still the manifest, without reading and parsing its bytes again.
        Before::Read(seen) if seen.is_current(bucket, &keys.state()).await? => {
            (seen.stored, false, seen.version, seen.listing)
        }
        Before::Read(seen) => {
            let read = fetch_parsed(bucket, &keys.state(), &stage.name).await?;
            let (stored, rebuild, version) = settle(read, stage, verify)?;
            // The listing is reused when the manifest reads as it did before.
            let listing = seen.listing.filter(|_| seen.stored == stored);
            (stored, rebuild, version, listing)
        }
    };
    let needs_listing = verify || stored.as_ref().is_none_or(|s| s.in_progress.is_some());
    // Shared with what was read (a large manifest is not copied): a copy is made only
    // when a listing repairs it.
    let mut state = stored
        .clone()
        .unwrap_or_else(|| Arc::new(StageState::empty(&stage.name)));

    if !needs_listing {
        return Ok((
            state,
            0,
            Seen {
                stored,
                listing: None,
                version,
            },
        ));
    }
    let listing = match earlier_listing {
        Some(listing) => listing,
        None => bucket.list(&stage.prefix).await?,
    };
    let repaired = Arc::make_mut(&mut state);
    if rebuild {
        *repaired = recover(bucket, keys, stage, &listing).await?;
    } else {
        drop_missing_blobs(bucket, keys, stage, repaired).await?;
    }
    fill_missing_md5(repaired, desired).await?;
    let (mut drifted, to_read) = reconcile(repaired, &stage.prefix, &listing);
    drifted += drop_wrong_content(bucket, &stage.prefix, repaired, to_read).await?;
    if drifted > 0 {
        tracing::warn!(stage = %stage.name, drifted, "objects changed or missing behind our back; they will be put back");
    }
    Ok((
        state,
        drifted,
        Seen {
            stored,
            listing: Some(listing),
            version,
        },
    ))
}

/// A stage's manifest as fetched, parsed (or why it could not be), with its version;
/// `None` when the stage has none.
type Answer = Option<(Result<StageState, ReleaseError>, Version)>;

/// Fetches and parses the manifest at `key`.
async fn fetch_parsed(bucket: &Bucket, key: &str, stage: &str) -> Result<Answer, StoreError> {
    Ok(bucket
        .get_versioned_cached(key)
        .await?
        .map(|(bytes, etag)| (parse_state(&bytes, stage), version_of(etag))))
}

/// A manifest's version from the ETag it was read with. A manifest without an ETag
/// cannot be written conditionally; the empty string makes that write fail loudly
/// rather than overwrite blindly.
fn version_of(etag: Option<String>) -> Version {
    Version(Some(etag.unwrap_or_default()))
}

/// What a fetched manifest means for the run: `(manifest, rebuild, version)`, where
/// `rebuild` says it was unreadable and `--verify` asked to rebuild it.
fn settle(
    read: Answer,
    stage: &Stage,
    verify: bool,
) -> Result<(Option<Arc<StageState>>, bool, Version), Error> {
    Ok(match read {
        Some((Ok(s), version)) => (Some(Arc::new(s)), false, version),
        Some((Err(e @ ReleaseError::UnreadableManifest { .. }), version)) if verify => {
            tracing::warn!(stage = %stage.name, "{e}; rebuilding it from a listing and the release records");
            (None, true, version)
        }
        Some((Err(e), _)) => return Err(e.into()),
        None => (None, false, Version(None)),
    })
}

/// The stage's manifest read and parsed while the run still walks and hashes `dist/`.
///
/// On a no-op deploy of a large site the two are most of the run (hashing every file;
/// one GET of a manifest that names every file, and parsing it), and neither needs
/// the other, so running them side by side takes the longer of the two instead of
/// their sum; the parse runs on a core of its own. Only the read-only first pass takes
/// it (what a no-op or a dry run decides on): under the stage lock the engine asks the
/// server again ([`Before::Read`]).
pub struct EarlyRead {
    task: tokio::task::JoinHandle<Result<Answer, StoreError>>,
    bucket: String,
    key: String,
}

impl EarlyRead {
    /// Starts reading `stage`'s manifest on the current runtime; sets `missing` as soon
    /// as the server says there is none (a first deploy, which sends every file).
    pub fn start(bucket: Bucket, stage: &Stage, missing: Arc<AtomicBool>) -> Self {
        let (key, name) = (Keys::new(&stage.name).state(), stage.name.clone());
        let (b, k) = (bucket.name().to_owned(), key.clone());
        let task = tokio::spawn(async move {
            let Some((bytes, etag)) = bucket.get_versioned_cached(&key).await? else {
                missing.store(true, Ordering::Relaxed);
                return Ok(None);
            };
            // Parsing a large manifest takes tens of milliseconds: off the runtime's
            // threads, so requests are not held up behind it.
            let parsed = tokio::task::spawn_blocking(move || parse_state(&bytes, &name))
                .await
                .map_err(|e| StoreError::Request {
                    op: "GetObject",
                    bucket: bucket.name().to_owned(),
                    key: key.clone(),
                    message: format!("parsing it stopped: {e}"),
                })?;
            Ok(Some((parsed, version_of(etag))))
        });
        Self {
            task,
            bucket: b,
            key: k,
        }
    }

    /// The answer, waiting for it if need be.
    async fn answer(mut self) -> Result<Answer, StoreError> {
        (&mut self.task).await.map_err(|e| StoreError::Request {
            op: "GetObject",
            bucket: std::mem::take(&mut self.bucket),
            key: std::mem::take(&mut self.key),
            message: format!("the early read stopped: {e}"),
        })?
    }
}

impl Drop for EarlyRead {
    fn drop(&mut self) {
        // A run that ended before taking it (an error in `dist/`) leaves no GET behind
        // (a task that has finished is not affected).
        self.task.abort();
    }
}

/// Reads a stage's manifest as stored (no listing); an empty one if there is none,
/// a refusal if it is unreadable.
pub async fn read_state(bucket: &Bucket, stage: &Stage) -> Result<StageState, Error> {
    let keys = Keys::new(&stage.name);
    match bucket.get_bytes(&keys.state()).await? {
        Some(bytes) => Ok(parse_state(&bytes, &stage.name)?),
        None => Ok(StageState::empty(&stage.name)),
    }
}

/// A stored manifest, or why it cannot be used: unreadable, or of a newer format.
fn parse_state(bytes: &[u8], stage: &str) -> Result<StageState, ReleaseError> {
    /// Read when the whole is not: a newer format need not parse as this one.
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let newer = |version| ReleaseError::NewerManifest {
        stage: stage.to_owned(),
        version,
    };
    let state: StageState =
        serde_json::from_slice(bytes).map_err(|e| {
            match serde_json::from_slice::<VersionOnly>(bytes) {
                Ok(v) if v.version > STATE_VERSION => newer(v.version),
                _ => ReleaseError::UnreadableManifest {
                    stage: stage.to_owned(),
                    reason: e.to_string(),
                },
            }
        })?;
    if state.version > STATE_VERSION {
        return Err(newer(state.version));
    }
    Ok(state)
}

/// Rebuilds the manifest of a stage whose manifest was lost, from what the bucket
/// still holds: the history from the release records (each written once, when the
/// release first went live there), each listed object whose content (read and hashed)
/// is a file of a recorded release, and the preserved blobs. Which release is live is
/// not known: the run that rebuilds the manifest decides it.
async fn recover(
    bucket: &Bucket,
    keys: &Keys,
    stage: &Stage,
    listing: &[Listed],
) -> Result<StageState, Error> {
    let mut releases = Vec::new();
    for listed in bucket.list(&keys.releases()).await? {
        let record = bucket.get_bytes(&listed.key).await?;
        match record.map(|b| serde_json::from_slice::<Release>(&b)) {
            Some(Ok(r)) => releases.push(r),
            Some(Err(e)) => {
                tracing::warn!(key = %listed.key, "skipping an unreadable release record: {e}")
            }
            None => tracing::warn!(key = %listed.key, "skipping a release record that vanished"),
        }
    }
    releases.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let mut state = StageState::empty(&stage.name);
    state.history = releases
        .iter()
        .map(|r| HistoryEntry {
            at: r.created_at.clone(),
            action: format!("{} (recovered)", r.source),
            by: r.created_by.clone(),
            files: r.files.len(),
            lambda_version: None,
            lambda_code_sha256: None,
            release: r.id.clone(),
        })
        .collect();
    // Newest first: an object or blob belongs to the newest release that has it.
    let newest_first: Vec<&Release> = releases.iter().rev().collect();
    for l in listing {
        let Some(path) = l.key.strip_prefix(&stage.prefix) else {
            continue;
        };
        if !newest_first
            .iter()
            .any(|r| r.files.get(path).is_some_and(|f| f.size == l.size))
        {
            continue;
        }
        let Some(bytes) = bucket.get_bytes(&l.key).await? else {
            continue;
        };
        let digests = crate::store::Digests::of(&bytes);
        let sha256 = digests.sha256_hex();
        let owner = newest_first.iter().find_map(|r| {
            r.files
                .get(path)
                .filter(|f| f.sha256 == sha256)
                .map(|f| (r, f))
        });
        if let Some((release, file)) = owner {
            state.objects.insert(
                path.to_owned(),
                ObjectEntry {
                    sha256,
                    size: file.size,
                    headers: file.headers.clone(),
                    etag: l.etag.clone(),
                    md5: digests.md5_hex(),
                    release: release.id.clone(),
                },
            );
        }
    }
    let blobs = keys.blob("");
    for l in bucket.list(&blobs).await? {
        let Some(sha) = l.key.strip_prefix(&blobs) else {
            continue;
        };
        let owner = newest_first
            .iter()
            .find(|r| r.files.values().any(|f| f.sha256 == sha))
            .or(newest_first.first());
        if let Some(r) = owner {
            state.blobs.insert(sha.to_owned(), r.id.clone());
        }
    }
    tracing::info!(
        stage = %stage.name,
        releases = state.history.len(),
        objects = state.objects.len(),
        blobs = state.blobs.len(),
        "manifest rebuilt from the bucket"
    );
    Ok(state)
}

pub(crate) async fn read_release(
    bucket: &Bucket,
    stage: &Stage,
    id: &str,
) -> Result<Release, Error> {
    let key = Keys::new(&stage.name).release(id);
    let missing = || ReleaseError::MissingRecord {
        stage: stage.name.clone(),
        release: id.to_owned(),
        key: key.clone(),
    };
    let bytes = bucket.get_bytes(&key).await?.ok_or_else(missing)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ReleaseError::UnreadableRecord {
            stage: stage.name.clone(),
            release: id.to_owned(),
            key: key.clone(),
            reason: e.to_string(),
        }
        .into()
    })
}

/// Drops from the manifest every object the listing shows missing or changed, so the
/// planner writes it again. Returns how many were dropped, and the paths whose listing
/// cannot settle it without reading the object.
///
/// An object is unchanged when its size matches and its listed ETag is the MD5 of the
/// content the manifest records (both known: a plain-MD5 ETag and a recorded MD5), else
/// when its ETag is the one recorded at upload time. A plain-MD5-looking ETag that is
/// not the content's MD5 yet is the one recorded is either a server whose ETags are not
/// MD5s (SSE-KMS) or bytes an older uploader stored wrongly: only the content can tell.
pub fn reconcile(
    state: &mut StageState,
    prefix: &str,
    listing: &[crate::store::Listed],
) -> (usize, Vec<String>) {
    let listed: BTreeMap<&str, &crate::store::Listed> =
        listing.iter().map(|l| (l.key.as_str(), l)).collect();
    let before = state.objects.len();
    let mut to_read = Vec::new();
    state.objects.retain(|path, entry| {
        let key = format!("{prefix}{path}");
        let Some(l) = listed.get(key.as_str()) else {
            return false;
        };
        if l.size != entry.size {
            return false;
        }
        match (&l.etag, &entry.md5, &entry.etag) {
            (Some(theirs), Some(md5), recorded) if is_plain_md5(theirs) => {
                if theirs.eq_ignore_ascii_case(md5) {
                    true
                } else if recorded.as_ref() == Some(theirs) {
                    to_read.push(path.clone());
                    true
                } else {
                    false
                }
            }
            (Some(theirs), _, Some(ours)) => ours == theirs,
            _ => true,
        }
    });
    state.in_progress = None;
    (before - state.objects.len(), to_read)
}

/// Drops from the manifest the preserved blobs that do not exist. A run marks the
/// manifest while it makes its copies (see `apply`), so a run that died may have left
/// the mark naming copies it never finished; a blob named but missing would otherwise
/// never be copied again, and a rollback would find nothing to restore from. One
/// listing, made only when the manifest names blobs.
async fn drop_missing_blobs(
    bucket: &Bucket,
    keys: &Keys,
    stage: &Stage,
    state: &mut StageState,
) -> Result<(), StoreError> {
    if state.blobs.is_empty() {
        return Ok(());
    }
    let prefix = keys.blob("");
    let listed: std::collections::BTreeSet<String> = bucket
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|l| l.key.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    let before = state.blobs.len();
    state.blobs.retain(|sha, _| listed.contains(sha));
    let dropped = before - state.blobs.len();
    if dropped > 0 {
        tracing::warn!(stage = %stage.name, dropped, "the manifest named preserved copies that are missing; they will be made again when needed");
    }
    Ok(())
}

/// Reads each of `paths` and drops from the manifest those whose content is not the
/// recorded SHA-256 (see [`reconcile`]). Returns how many were dropped.
async fn drop_wrong_content(
    bucket: &Bucket,
    prefix: &str,
    state: &mut StageState,
    paths: Vec<String>,
) -> Result<usize, Error> {
    let expected: Vec<(String, String)> = paths
        .into_iter()
        .filter_map(|p| state.objects.get(&p).map(|e| (p, e.sha256.clone())))
        .collect();
    let checked: Vec<Result<(String, bool), StoreError>> = futures::stream::iter(expected)
        .map(|(path, sha256)| async move {
            let bytes = bucket.get_bytes(&format!("{prefix}{path}")).await?;
            let same = bytes.is_some_and(|b| crate::local::hash_bytes(&b) == sha256);
            Ok((path, same))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut dropped = 0;
    for result in checked {
        let (path, same) = result?;
        if !same {
            state.objects.remove(&path);
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Fills in the content MD5 of manifest entries that lack it (manifests written before
/// it was recorded) from the release's own files, so `--verify` can check every listed
/// ETag against content rather than against what an upload once reported.
async fn fill_missing_md5(state: &mut StageState, desired: &[Desired]) -> Result<(), Error> {
    let by_path: BTreeMap<&str, &Desired> = desired.iter().map(|d| (d.path.as_str(), d)).collect();
    let wanted: Vec<(String, Source)> = state
        .objects
        .iter()
        .filter(|(_, e)| e.md5.is_none())
        .filter_map(|(path, e)| {
            by_path
                .get(path.as_str())
                .filter(|d| d.sha256 == e.sha256)
                .map(|d| (path.clone(), d.source.clone()))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let sums = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .filter_map(|(path, source)| match source {
                Source::File(abs) => Some(crate::local::md5_file(&abs).map(|m| (path, m))),
                Source::Bytes(bytes) => Some(Ok((path, crate::store::md5_hex(&bytes)))),
                Source::Copy { .. } => None,
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| crate::local::LocalError::Io {
        path: "the build output".into(),
        source: std::io::Error::other(e),
    })??;
    for (path, md5) in sums {
        if let Some(entry) = state.objects.get_mut(&path) {
            entry.md5 = Some(md5);
        }
    }
    Ok(())
}

/// Writes the manifest if it is still the `version` this run read or wrote last, and
/// moves `version` on; a manifest another run wrote since is
/// [`Error::Overtaken`], and nothing is written.
pub(crate) async fn write_state(
    bucket: &Bucket,
    keys: &Keys,
    state: &StageState,
    version: &mut Version,
) -> Result<(), Error> {
    let body = serde_json::to_vec(state).unwrap_or_default();
    // A finished manifest is kept on this machine for its next run (a marked one is
    // replaced within the run); copied only when there is somewhere to keep it.
    let keep =
        (state.in_progress.is_none() && bucket.keeps_manifest_copies()).then(|| body.clone());
    let key = keys.state();
    let written = match &version.0 {
        Some(etag) => bucket.put_if_match(&key, body, etag).await?,
        None => bucket.put_if_absent(&key, body).await?,
    };
    match written {
        // A server that answers without an ETag leaves nothing to condition the next
        // write on: read it back.
        Some(Some(etag)) => version.0 = Some(etag),
        Some(None) => version.0 = bucket.version_of(&key).await?,
        None => {
            return Err(Error::Overtaken {
                stage: state.stage.clone(),
            });
        }
    }
    if let (Some(bytes), Some(etag)) = (keep, &version.0)
        && let Some(kept) = bucket.remember(&key, etag, bytes)
    {
        // Best effort: a copy that could not be written is only a GET next time.
        let _ = kept.await;
    }
    Ok(())
}

/// Writes a release record (immutable: its id is its content).
pub(crate) async fn write_release(
    bucket: &Bucket,
    keys: &Keys,
    release: &Release,
) -> Result<(), Error> {
    let body = serde_json::to_vec(release).unwrap_or_default();
    bucket.put_record(&keys.release(&release.id), body).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ObjectEntry;
    use crate::store::Listed;

    fn obj(etag: &str, size: u64) -> ObjectEntry {
        ObjectEntry {
            sha256: "s".into(),
            size,
            headers: Default::default(),
            etag: Some(etag.into()),
            md5: None,
            release: "r1".into(),
        }
    }

    #[test]
    fn a_newer_manifest_is_refused_as_newer_even_when_it_does_not_parse() {
        let newer = br#"{"version":9,"stage":"dev","files":"kept elsewhere"}"#;
        assert!(matches!(
            parse_state(newer, "dev"),
            Err(ReleaseError::NewerManifest { version: 9, .. })
        ));
        let broken = br#"{"version":2,"stage":"dev","files":"kept elsewhere"}"#;
        assert!(matches!(
            parse_state(broken, "dev"),
            Err(ReleaseError::UnreadableManifest { .. })
        ));
    }

    #[test]
    fn reconcile_drops_missing_and_changed_objects() {
        let mut state = StageState::empty("dev");
        state.objects.insert("same.txt".into(), obj("e1", 1));
        state.objects.insert("changed.txt".into(), obj("e2", 1));
        state.objects.insert("gone.txt".into(), obj("e3", 1));
        state.in_progress = Some("crashed".into());
        let listing = vec![
            Listed {
                key: "dev/same.txt".into(),
                size: 1,
                etag: Some("e1".into()),
            },
            Listed {
                key: "dev/changed.txt".into(),
                size: 1,
                etag: Some("other".into()),
            },
            Listed {
                key: "dev/untracked.txt".into(),
                size: 1,
                etag: None,
            },
        ];
        assert_eq!(reconcile(&mut state, "dev/", &listing), (2, vec![]));
        assert_eq!(state.objects.keys().collect::<Vec<_>>(), ["same.txt"]);
        assert!(state.in_progress.is_none());
    }

    #[test]
    fn reconcile_checks_md5_etags_against_the_content_and_reads_what_it_cannot_settle() {
        let good = crate::store::md5_hex(b"good");
        let mangled = crate::store::md5_hex(b"C;chunk-signature=0\r\ngood");
        let mut state = StageState::empty("dev");
        let mut entry = obj(&good, 4);
        entry.md5 = Some(good.clone());
        state.objects.insert("right.txt".into(), entry.clone());
        // Changed behind our back: neither the content's MD5 nor the recorded ETag.
        state.objects.insert("changed.txt".into(), entry.clone());
        // Recorded with the ETag the server gave (an older uploader believed it, or the
        // server's ETags are not MD5s): only reading the object can tell.
        entry.etag = Some(mangled.clone());
        state.objects.insert("ambiguous.txt".into(), entry);
        let listed = |key: &str, etag: &str| Listed {
            key: key.into(),
            size: 4,
            etag: Some(etag.into()),
        };
        let listing = vec![
            listed("dev/right.txt", &good),
            listed("dev/changed.txt", &mangled),
            listed("dev/ambiguous.txt", &mangled),
        ];
        let (drifted, to_read) = reconcile(&mut state, "dev/", &listing);
        assert_eq!((drifted, to_read), (1, vec!["ambiguous.txt".to_owned()]));
        assert_eq!(
            state.objects.keys().collect::<Vec<_>>(),
            ["ambiguous.txt", "right.txt"]
        );
    }
}
