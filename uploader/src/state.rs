//! What the bucket records about a stage, next to its files.
//!
//! Everything the uploader keeps for a stage lives under `_uploader/stages/{stage}/` in
//! the stage's bucket, outside the key prefix CloudFront serves:
//!
//! - `state.json`: the stage's manifest — every object the uploader has written under
//!   the prefix (path → sha256, size, headers, ETag), which release is live and the
//!   history. A normal deploy trusts it instead of listing the prefix, so a no-op deploy
//!   costs one small GET.
//! - `releases/{id}.json`: one immutable record per release (its files and headers;
//!   `config.json` excluded, since that is the one file that differs per stage).
//! - `blobs/{sha256}`: the previous content of files a later release overwrote (HTML,
//!   `config.json`, other unhashed names), so a rollback is a server-side copy.
//! - `lock.json`: held while a deploy, promote or rollback runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::headers::Headers;

mod wire;

/// The manifest format this build writes (see `wire`); it reads every one up to it.
pub const STATE_VERSION: u32 = 2;

/// The key layout of a stage's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(stage: &str) -> Self {
        Self {
            root: format!("{}{stage}/", Self::ALL_STAGES),
        }
    }
    /// The folder of the uploader's own records, outside every stage's prefix.
    pub const ROOT: &'static str = "_uploader/";
    /// The folder holding every stage's records.
    pub const ALL_STAGES: &'static str = "_uploader/stages/";
    pub fn root(&self) -> &str {
        &self.root
    }
    pub fn state(&self) -> String {
        format!("{}state.json", self.root)
    }
    pub fn lock(&self) -> String {
        format!("{}lock.json", self.root)
    }
    /// The folder of the release records.
    pub fn releases(&self) -> String {
        format!("{}releases/", self.root)
    }
    pub fn release(&self, id: &str) -> String {
        format!("{}releases/{id}.json", self.root)
    }
    pub fn blob(&self, sha256: &str) -> String {
        format!("{}blobs/{sha256}", self.root)
    }
}

/// One object under the stage prefix, as the uploader wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectEntry {
    pub sha256: String,
    pub size: u64,
    pub headers: Headers,
    /// The ETag S3 returned when it was written: how `--verify` spots a change made
    /// behind our back without reading the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The hex MD5 of the content, when known (recorded by single-part uploads): on
    /// servers whose listing ETags are plain MD5s, `--verify` compares them with this,
    /// so an object stored wrongly is found even when its ETag was recorded as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The newest release that contains this object (retention is counted from it).
    pub release: String,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
    pub headers: Headers,
}

/// An immutable release: the bundle, exactly as built once. Its id is derived from its
/// content, so the same build has the same id on every stage. (Its JSON: `wire`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// `deploy`, or `promoted from <stage>`.
    pub source: String,
    pub created_by: Option<String>,
    pub files: BTreeMap<String, FileEntry>,
}

/// One change of what a stage serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub release: String,
    /// RFC 3339.
    pub at: String,
    /// `deploy`, `promote from dev`, `rollback`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub files: usize,
    /// The Lambda version the stage's alias pointed at from then on, for stages with an
    /// `[api]` section (absent otherwise, and in manifests written before it existed).
    /// A rollback to this release moves the alias back to it.
    ///
    /// It lives here rather than in the [`Release`] record because a release is the
    /// front end only (its id is its content): the same bundle can go live with
    /// different Lambda versions, and each change of the pair is one history entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_version: Option<String>,
    /// The CodeSha256 (base64 SHA-256 of the zip) of the API code the stage ran from
    /// then on, when the uploader knows it: shipped by a deploy with a Lambda zip,
    /// published by a promote, or restored by a rollback. A promote publishes exactly
    /// this code from the source stage (Lambda refuses the publish when `$LATEST` has
    /// changed since), so prod gets the API that was tested with the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_code_sha256: Option<String>,
}

/// A stage's manifest (see the module docs; its JSON: `wire`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageState {
    pub version: u32,
    pub stage: String,
    /// The release served now.
    pub current: Option<String>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
    /// Path relative to the stage prefix → what is stored there.
    pub objects: BTreeMap<String, ObjectEntry>,
    /// Preserved previous contents (sha256 → newest release that needed it).
    pub blobs: BTreeMap<String, String>,
    /// Set while a run is writing; a run that finds it set from a crashed run does not
    /// trust `objects` and lists the prefix instead.
    pub in_progress: Option<String>,
    /// CloudFront paths a previous run could not invalidate; the next run retries them.
    pub pending_invalidation: Vec<String>,
}

/// How many history entries `state.json` keeps (release records stay regardless).
pub const MAX_HISTORY: usize = 100;

impl StageState {
    pub fn empty(stage: &str) -> Self {
        Self {
            version: STATE_VERSION,
            stage: stage.to_owned(),
            ..Default::default()
        }
    }

    /// Distinct releases, newest first, starting with the current one.
    pub fn recent_releases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        if let Some(c) = &self.current {
            out.push(c);
        }
        for h in self.history.iter().rev() {
            if !out.contains(&h.release.as_str()) {
                out.push(&h.release);
            }
        }
        out
    }

    /// The Lambda version recorded with what the stage serves now (see
    /// [`HistoryEntry::lambda_version`]).
    pub fn current_lambda_version(&self) -> Option<&str> {
        self.history
            .last()
            .and_then(|h| h.lambda_version.as_deref())
    }

    /// The Lambda version that was live with `release` most recently, if one was recorded.
    pub fn lambda_version_of(&self, release: &str) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .filter(|h| h.release == release)
            .find_map(|h| h.lambda_version.as_deref())
    }

    /// The API code recorded with what the stage serves now (see
    /// [`HistoryEntry::lambda_code_sha256`]).
    pub fn current_lambda_code(&self) -> Option<&str> {
        self.history
            .last()
            .and_then(|h| h.lambda_code_sha256.as_deref())
    }

    /// The code recorded in the same entry as [`Self::lambda_version_of`], so a
    /// rollback records the pair it restores.
    pub fn lambda_code_of(&self, release: &str) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .filter(|h| h.release == release)
            .find(|h| h.lambda_version.is_some())
            .and_then(|h| h.lambda_code_sha256.as_deref())
    }

    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.push(entry);
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
    }
}

/// The content-derived id of a release: the same files with the same headers always
/// give the same id, so a build promoted to prod keeps the id it had on dev.
pub fn release_id(files: &BTreeMap<String, FileEntry>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // One buffer for the headers as JSON, written again only when they differ from
    // the previous file's (neighbours mostly share them; the bytes hashed are the same).
    let mut headers = Vec::new();
    let mut last: Option<&crate::headers::Headers> = None;
    for (path, f) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(f.sha256.as_bytes());
        h.update([0]);
        if last != Some(&f.headers) {
            headers.clear();
            if serde_json::to_writer(&mut headers, &f.headers).is_err() {
                headers.clear();
            }
            last = Some(&f.headers);
        }
        h.update(&headers);
        h.update([0]);
    }
    format!("r-{}", &crate::local::to_hex(&h.finalize())[..12])
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Who runs this, when the environment says (CI systems and shells set these).
pub fn actor() -> Option<String> {
    if let Ok(actor) = std::env::var("GITHUB_ACTOR") {
        let run = std::env::var("GITHUB_RUN_ID")
            .map(|r| format!(" (run {r})"))
            .unwrap_or_default();
        return Some(format!("{actor} via GitHub Actions{run}"));
    }
    for var in ["UPLOADER_ACTOR", "USER", "USERNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(release: &str) -> HistoryEntry {
        HistoryEntry {
            release: release.into(),
            at: String::new(),
            action: "deploy".into(),
            by: None,
            files: 1,
            lambda_version: None,
            lambda_code_sha256: None,
        }
    }

    #[test]
    fn retention_counts_distinct_releases_from_the_current_one() {
        let mut s = StageState::empty("dev");
        for r in ["a", "b", "c", "b", "d"] {
            s.push_history(entry(r));
        }
        s.current = Some("d".into());
        assert_eq!(s.recent_releases(), ["d", "b", "c", "a"]);
    }

    /// The id is part of the stored records: a build must keep the id older uploaders
    /// gave it (SHA-256 over path, content hash and headers as JSON, in path order; the
    /// expected value is computed outside Rust), whichever files share headers.
    #[test]
    fn release_id_is_stable_across_versions() {
        let file = |sha: &str, content_type: &str, cache_control: &str| FileEntry {
            sha256: sha.into(),
            size: 1,
            headers: Headers {
                content_type: content_type.into(),
                cache_control: cache_control.into(),
                ..Headers::default()
            },
        };
        let (css, html) = ("text/css; charset=utf-8", "text/html; charset=utf-8");
        let short = "public, max-age=300";
        let files = BTreeMap::from([
            ("a.css".to_owned(), file("11", css, short)),
            ("b.html".to_owned(), file("22", html, "no-cache")),
            ("c.css".to_owned(), file("33", css, short)),
            ("d.css".to_owned(), file("44", css, short)),
        ]);
        assert_eq!(release_id(&files), "r-2f6829e6b52b");
    }

    #[test]
    fn release_id_depends_on_content_and_headers_only() {
        let mut files = BTreeMap::new();
        files.insert(
            "index.html".to_owned(),
            FileEntry {
                sha256: "aa".into(),
                size: 1,
                headers: Headers::default(),
            },
        );
        let a = release_id(&files);
        assert_eq!(a, release_id(&files.clone()));
        files.get_mut("index.html").unwrap().headers.cache_control = "no-cache".into();
        assert_ne!(a, release_id(&files));
        assert!(a.starts_with("r-") && a.len() == 14);
    }

    #[test]
    fn lambda_versions_are_read_from_history_and_old_manifests_still_parse() {
        let old = r#"{"version":1,"stage":"prod","current":"b","history":[
            {"release":"a","at":"t","action":"deploy","files":1},
            {"release":"b","at":"t","action":"promote from dev","files":1}]}"#;
        let mut s: StageState = serde_json::from_str(old).unwrap();
        assert_eq!(s.current_lambda_version(), None);
        assert_eq!(s.lambda_version_of("a"), None);
        for (r, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            s.push_history(HistoryEntry {
                lambda_version: Some(v.into()),
                ..entry(r)
            });
        }
        assert_eq!(s.current_lambda_version(), Some("3"));
        assert_eq!(s.lambda_version_of("a"), Some("3"));
        assert_eq!(s.lambda_version_of("b"), Some("2"));
        let json = serde_json::to_value(&s.history[2]).unwrap();
        assert_eq!(json["lambdaVersion"], "1");
        assert!(
            serde_json::to_value(entry("x"))
                .unwrap()
                .get("lambdaVersion")
                .is_none()
        );
    }

    #[test]
    fn history_is_capped() {
        let mut s = StageState::empty("dev");
        for i in 0..(MAX_HISTORY + 5) {
            s.push_history(entry(&i.to_string()));
        }
        assert_eq!(s.history.len(), MAX_HISTORY);
        assert_eq!(s.history[0].release, "5");
    }
}
