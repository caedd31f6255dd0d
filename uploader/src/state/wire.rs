//! How a manifest and a release record are written as JSON, and read back.
//!
//! Format 1 spelled every file out as an object, headers included: at 2,000 files a
//! manifest was 640 KB and its release record 420 KB, and a deploy that changes one
//! file writes the manifest twice (the mark and the record) and a new release record.
//! Serialising, hashing and sending those bodies (and the server checking them) was a
//! fifth of such a run. Format 2 holds the same content in about half the bytes:
//!
//! - each distinct set of headers is written once, in `headerSets`, and files name
//!   theirs by index;
//! - a file is an array: `[sha256, size, headers]` in a release record, and
//!   `[sha256, size, headers, md5, release]` in a manifest, followed by the ETag only
//!   when it differs from the MD5 (`null` when none was recorded), which on S3 it
//!   rarely does;
//! - the manifest's files are under `files`, not format 1's `objects`: an uploader
//!   that knows only format 1 finds no `objects`, reads version 2, and stops with
//!   "newer than this uploader understands" rather than misreading the stage as empty.
//!
//! Both formats are read, so stages deployed before keep working; the next write of
//! their manifest is format 2. Old release records stay as they were written; new
//! ones say `"format": 2` (format 1 had no such field), so a later format can be
//! refused as newer rather than misread.
//!
//! Any change to a file's array, even one more element, is a new format: a reader
//! refuses arrays longer than it knows (the whole record is then unreadable).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FileEntry, HistoryEntry, ObjectEntry, Release, STATE_VERSION, StageState};
use crate::headers::Headers;

/// The release record format this build writes, and the newest it reads.
pub const RELEASE_FORMAT: u32 = 2;

/// The distinct header sets of some files, in order of first use.
struct HeaderSets<'a> {
    list: Vec<&'a Headers>,
    index: HashMap<&'a Headers, usize>,
}

impl<'a> HeaderSets<'a> {
    fn of(all: impl Iterator<Item = &'a Headers>) -> Self {
        let mut sets = HeaderSets {
            list: Vec::new(),
            index: HashMap::new(),
        };
        for h in all {
            let next = sets.list.len();
            if *sets.index.entry(h).or_insert(next) == next {
                sets.list.push(h);
            }
        }
        sets
    }

    fn index_of(&self, h: &Headers) -> usize {
        // Every file's headers were collected by `of` from the same files.
        let i = self.index.get(h).copied();
        debug_assert!(i.is_some(), "headers not collected: {h:?}");
        i.unwrap_or_default()
    }
}

/// Files as a JSON object of path → array, each naming its headers by index.
struct Files<'a, T> {
    files: &'a BTreeMap<String, T>,
    sets: &'a HeaderSets<'a>,
}

impl Serialize for Files<'_, ObjectEntry> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.files.len()))?;
        for (path, o) in self.files {
            map.serialize_entry(path, &CompactObject(o, self.sets.index_of(&o.headers)))?;
        }
        map.end()
    }
}

impl Serialize for Files<'_, FileEntry> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.files.len()))?;
        for (path, f) in self.files {
            map.serialize_entry(path, &(&f.sha256, f.size, self.sets.index_of(&f.headers)))?;
        }
        map.end()
    }
}

struct CompactObject<'a>(&'a ObjectEntry, usize);

impl Serialize for CompactObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.0;
        let etag_differs = o.etag != o.md5;
        let mut seq = s.serialize_seq(Some(if etag_differs { 6 } else { 5 }))?;
        seq.serialize_element(&o.sha256)?;
        seq.serialize_element(&o.size)?;
        seq.serialize_element(&self.1)?;
        seq.serialize_element(&o.md5)?;
        seq.serialize_element(&o.release)?;
        if etag_differs {
            seq.serialize_element(&o.etag)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateOut<'a> {
    version: u32,
    stage: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: &'a Option<String>,
    history: &'a [HistoryEntry],
    header_sets: &'a [&'a Headers],
    files: Files<'a, ObjectEntry>,
    blobs: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_progress: &'a Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pending_invalidation: &'a [String],
}

impl Serialize for StageState {
    /// Always format 2, whatever version was read.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sets = HeaderSets::of(self.objects.values().map(|o| &o.headers));
        StateOut {
            version: STATE_VERSION,
            stage: &self.stage,
            current: &self.current,
            history: &self.history,
            header_sets: &sets.list,
            files: Files {
                files: &self.objects,
                sets: &sets,
            },
            blobs: &self.blobs,
            in_progress: &self.in_progress,
            pending_invalidation: &self.pending_invalidation,
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseOut<'a> {
    format: u32,
    id: &'a str,
    created_at: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: &'a Option<String>,
    header_sets: &'a [&'a Headers],
    files: Files<'a, FileEntry>,
}

impl Serialize for Release {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sets = HeaderSets::of(self.files.values().map(|f| &f.headers));
        ReleaseOut {
            format: RELEASE_FORMAT,
            id: &self.id,
            created_at: &self.created_at,
            source: &self.source,
            created_by: &self.created_by,
            header_sets: &sets.list,
            files: Files {
                files: &self.files,
                sets: &sets,
            },
        }
        .serialize(s)
    }
}

/// A file as read: format 1 spells its headers out, format 2 names them by index
/// (and the entry holds default headers until they are looked up).
enum Read<T> {
    Full(T),
    Compact(usize, T),
}

impl<T: Compact> Read<T> {
    fn resolve(self, sets: &[Headers]) -> Result<T, String> {
        match self {
            Read::Full(t) => Ok(t),
            Read::Compact(i, mut t) => {
                let h = sets.get(i).ok_or_else(|| {
                    format!("a file names header set {i}, but there are {}", sets.len())
                })?;
                t.headers_mut().clone_from(h);
                Ok(t)
            }
        }
    }
}

/// Reads a file in either format: an object (format 1) or an array (format 2),
/// whose elements `compact` takes in order.
struct EitherForm<T>(std::marker::PhantomData<T>, &'static str);

trait Compact: Sized {
    fn compact<'de, A: SeqAccess<'de>>(seq: A) -> Result<Read<Self>, A::Error>;
    fn headers_mut(&mut self) -> &mut Headers;
}

impl<'de, T: Compact + Deserialize<'de>> Visitor<'de> for EitherForm<T> {
    type Value = Read<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Read<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Read::Full)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Read<T>, A::Error> {
        T::compact(seq)
    }
}

fn element<'de, A: SeqAccess<'de>, V: Deserialize<'de>>(
    seq: &mut A,
    i: usize,
) -> Result<V, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::invalid_length(i, &"a file's digest, size and headers"))
}

impl Compact for ObjectEntry {
    fn compact<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Read<Self>, A::Error> {
        let sha256: String = element(&mut seq, 0)?;
        let size: u64 = element(&mut seq, 1)?;
        let headers: usize = element(&mut seq, 2)?;
        let md5: Option<String> = element(&mut seq, 3)?;
        let release: String = element(&mut seq, 4)?;
        // Absent: the same as the MD5.
        let etag = match seq.next_element::<Option<String>>()? {
            Some(etag) => etag,
            None => md5.clone(),
        };
        Ok(Read::Compact(
            headers,
            ObjectEntry {
                sha256,
                size,
                headers: Headers::default(),
                etag,
                md5,
                release,
            },
        ))
    }

    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl Compact for FileEntry {
    fn compact<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Read<Self>, A::Error> {
        let sha256: String = element(&mut seq, 0)?;
        let size: u64 = element(&mut seq, 1)?;
        let headers: usize = element(&mut seq, 2)?;
        Ok(Read::Compact(
            headers,
            FileEntry {
                sha256,
                size,
                headers: Headers::default(),
            },
        ))
    }

    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl<'de> Deserialize<'de> for Read<ObjectEntry> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EitherForm(Default::default(), "a manifest's file entry"))
    }
}

impl<'de> Deserialize<'de> for Read<FileEntry> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EitherForm(Default::default(), "a release's file entry"))
    }
}

fn resolve_all<T: Compact>(
    files: BTreeMap<String, Read<T>>,
    sets: &[Headers],
) -> Result<BTreeMap<String, T>, String> {
    files
        .into_iter()
        .map(|(path, f)| f.resolve(sets).map(|f| (path, f)))
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateIn {
    version: u32,
    stage: String,
    #[serde(default)]
    current: Option<String>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
    #[serde(default)]
    header_sets: Vec<Headers>,
    /// Format 1.
    #[serde(default)]
    objects: BTreeMap<String, Read<ObjectEntry>>,
    /// Format 2.
    #[serde(default)]
    files: BTreeMap<String, Read<ObjectEntry>>,
    #[serde(default)]
    blobs: BTreeMap<String, String>,
    #[serde(default)]
    in_progress: Option<String>,
    #[serde(default)]
    pending_invalidation: Vec<String>,
}

impl<'de> Deserialize<'de> for StageState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut s = StateIn::deserialize(d)?;
        s.objects.append(&mut s.files);
        Ok(StageState {
            version: s.version,
            stage: s.stage,
            current: s.current,
            history: s.history,
            objects: resolve_all(s.objects, &s.header_sets).map_err(de::Error::custom)?,
            blobs: s.blobs,
            in_progress: s.in_progress,
            pending_invalidation: s.pending_invalidation,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseIn {
    /// Absent in format 1.
    #[serde(default)]
    format: Option<u32>,
    id: String,
    created_at: String,
    source: String,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    header_sets: Vec<Headers>,
    files: BTreeMap<String, Read<FileEntry>>,
}

impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ReleaseIn::deserialize(d)?;
        if let Some(newer) = r.format.filter(|f| *f > RELEASE_FORMAT) {
            return Err(de::Error::custom(format!(
                "release record format {newer} is newer than this uploader understands; use a newer uploader"
            )));
        }
        Ok(Release {
            id: r.id,
            created_at: r.created_at,
            source: r.source,
            created_by: r.created_by,
            files: resolve_all(r.files, &r.header_sets).map_err(de::Error::custom)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str, cc: &str) -> Headers {
        Headers {
            content_type: ct.into(),
            cache_control: cc.into(),
            ..Default::default()
        }
    }

    fn object(sha: &str, h: Headers, md5: Option<&str>, etag: Option<&str>) -> ObjectEntry {
        ObjectEntry {
            sha256: sha.into(),
            size: 12,
            headers: h,
            etag: etag.map(Into::into),
            md5: md5.map(Into::into),
            release: "r-1".into(),
        }
    }

    fn state() -> StageState {
        let html = headers("text/html", "no-cache");
        let mut gz = headers("text/javascript", "immutable");
        gz.content_encoding = Some("gzip".into());
        gz.metadata.insert("origin".into(), "ci".into());
        let mut s = StageState::empty("dev");
        s.current = Some("r-1".into());
        s.history.push(HistoryEntry {
            release: "r-1".into(),
            at: "2026-01-01T00:00:00Z".into(),
            action: "deploy".into(),
            by: None,
            files: 5,
            lambda_version: Some("3".into()),
            lambda_code_sha256: None,
        });
        let o = &mut s.objects;
        // The ETag is the MD5 (the common case), differs from it (multipart), is
        // unknown, or comes without an MD5 (a copy).
        o.insert(
            "a.html".into(),
            object("aa", html.clone(), Some("m1"), Some("m1")),
        );
        o.insert(
            "b.js".into(),
            object("bb", gz.clone(), Some("m2"), Some("e-2")),
        );
        o.insert("c.html".into(), object("cc", html, Some("m3"), None));
        o.insert("d.js".into(), object("dd", gz.clone(), None, Some("e-4")));
        o.insert("e.js".into(), object("ee", gz, None, None));
        s.blobs.insert("old".into(), "r-0".into());
        s.in_progress = Some("token".into());
        s.pending_invalidation.push("/index.html".into());
        s
    }

    #[test]
    fn a_manifest_reads_back_as_it_was_written() {
        let s = state();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StageState>(&json).unwrap(), s);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["version"], 2);
        assert!(v.get("objects").is_none(), "{json}");
        // Two header sets for five files; the ETag only where it is not the MD5.
        assert_eq!(v["headerSets"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["files"]["a.html"],
            serde_json::json!(["aa", 12, 0, "m1", "r-1"])
        );
        assert_eq!(v["files"]["c.html"][5], serde_json::Value::Null);
        assert_eq!(v["files"]["e.js"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn a_format_1_manifest_is_read_and_rewritten_in_format_2() {
        let v1 = r#"{"version":1,"stage":"dev","current":"r-1","history":[],
            "objects":{
              "a.html":{"sha256":"aa","size":12,"headers":{"contentType":"text/html","cacheControl":"no-cache"},"etag":"m1","md5":"m1","release":"r-1"},
              "b.js":{"sha256":"bb","size":12,"headers":{"contentType":"text/javascript","cacheControl":"immutable"},"release":"r-1"}},
            "blobs":{}}"#;
        let s: StageState = serde_json::from_str(v1).unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(
            s.objects["a.html"],
            object(
                "aa",
                headers("text/html", "no-cache"),
                Some("m1"),
                Some("m1")
            )
        );
        assert_eq!(
            s.objects["b.js"],
            object("bb", headers("text/javascript", "immutable"), None, None)
        );
        let again: StageState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(again.version, 2);
        assert_eq!(again.objects, s.objects);
    }

    /// What an uploader that knows only format 1 makes of format 2: no files, and
    /// a version it refuses (its `parse_state`), never an empty stage taken as true.
    #[test]
    fn a_format_1_reader_sees_no_files_and_a_newer_version() {
        #[derive(Deserialize)]
        struct OldReader {
            version: u32,
            #[serde(default)]
            objects: BTreeMap<String, serde_json::Value>,
        }
        let old: OldReader =
            serde_json::from_slice(&serde_json::to_vec(&state()).unwrap()).unwrap();
        assert!(old.version > 1 && old.objects.is_empty());
    }

    #[test]
    fn a_release_record_reads_back_in_either_format() {
        let mut files = BTreeMap::new();
        for (p, ct) in [
            ("index.html", "text/html"),
            ("a.js", "text/javascript"),
            ("b.js", "text/javascript"),
        ] {
            files.insert(
                p.to_owned(),
                FileEntry {
                    sha256: format!("sha-{p}"),
                    size: 3,
                    headers: headers(ct, "no-cache"),
                },
            );
        }
        let r = Release {
            id: "r-1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            source: "deploy".into(),
            created_by: Some("ci".into()),
            files,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Release>(&json).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["format"], RELEASE_FORMAT);
        assert_eq!(v["files"]["a.js"], serde_json::json!(["sha-a.js", 3, 0]));
        assert_eq!(v["headerSets"].as_array().unwrap().len(), 2);

        let v1 = r#"{"id":"r-1","createdAt":"2026-01-01T00:00:00Z","source":"deploy","createdBy":"ci",
            "files":{"index.html":{"sha256":"sha-index.html","size":3,"headers":{"contentType":"text/html","cacheControl":"no-cache"}},
                     "a.js":{"sha256":"sha-a.js","size":3,"headers":{"contentType":"text/javascript","cacheControl":"no-cache"}},
                     "b.js":{"sha256":"sha-b.js","size":3,"headers":{"contentType":"text/javascript","cacheControl":"no-cache"}}}}"#;
        assert_eq!(serde_json::from_str::<Release>(v1).unwrap(), r);

        let newer = json.replacen("\"format\":2", "\"format\":3", 1);
        let err = serde_json::from_str::<Release>(&newer)
            .unwrap_err()
            .to_string();
        assert!(err.contains("format 3 is newer"), "{err}");
    }

    #[test]
    fn a_file_naming_a_missing_header_set_is_unreadable() {
        let bad = r#"{"version":2,"stage":"dev","headerSets":[{"contentType":"a","cacheControl":"b"}],
            "files":{"a":["aa",1,1,null,"r-1"]}}"#;
        let err = serde_json::from_str::<StageState>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("header set 1"), "{err}");
        let short = r#"{"version":2,"stage":"dev","files":{"a":["aa",1]}}"#;
        assert!(serde_json::from_str::<StageState>(short).is_err());
    }

    /// The module's promise: one more element is a new format, never ignored.
    #[test]
    fn a_file_array_longer_than_its_format_is_unreadable() {
        let sets = r#""headerSets":[{"contentType":"a","cacheControl":"b"}]"#;
        let manifest = format!(
            r#"{{"version":2,"stage":"dev",{sets},"files":{{"a":["aa",1,0,"m","r-1","e","more"]}}}}"#
        );
        assert!(serde_json::from_str::<StageState>(&manifest).is_err());
        let record = format!(
            r#"{{"format":2,"id":"r-1","createdAt":"t","source":"deploy",{sets},"files":{{"a":["aa",1,0,"more"]}}}}"#
        );
        assert!(serde_json::from_str::<Release>(&record).is_err());
        let fits = record.replace(r#","more""#, "");
        assert!(serde_json::from_str::<Release>(&fits).is_ok(), "{fits}");
    }
}
