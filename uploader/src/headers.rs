//! The HTTP headers each object is stored with.
//!
//! The defaults fit trunk output: content-hashed file names never change meaning, so
//! browsers and CloudFront may keep them for a year; HTML and `config.json` decide which
//! release a visitor gets, so they must be revalidated on every load. Everything else
//! gets a short max-age. Per-glob overrides in the config file win over the defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const NO_CACHE: &str = "no-cache";
pub const SHORT: &str = "public, max-age=300";

/// The headers S3 stores with an object and serves back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    pub content_type: String,
    pub cache_control: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// User metadata (`x-amz-meta-*`), keys lower-case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// One `[[headers]]` rule of the config file: files matching `glob` get these values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    pub glob: String,
    pub cache_control: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Compiled header rules; later rules win over earlier ones.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    rules: Vec<(globset::GlobMatcher, HeaderRule)>,
}

/// Two rule sets are the same when they were compiled from the same rules.
impl PartialEq for HeaderRules {
    fn eq(&self, other: &Self) -> bool {
        self.rules.len() == other.rules.len()
            && self.rules.iter().zip(&other.rules).all(|(a, b)| a.1 == b.1)
    }
}

impl Eq for HeaderRules {}

impl HeaderRules {
    pub fn new(rules: &[HeaderRule]) -> Result<Self, globset::Error> {
        let rules = rules
            .iter()
            .map(|r| {
                let glob = globset::GlobBuilder::new(&r.glob)
                    .literal_separator(false)
                    .build()?;
                Ok((glob.compile_matcher(), r.clone()))
            })
            .collect::<Result<_, globset::Error>>()?;
        Ok(Self { rules })
    }

    /// The headers for a file at `path` (relative to `dist/`, `/`-separated).
    pub fn for_path(&self, path: &str) -> Headers {
        let mut h = Headers {
            content_type: content_type(path),
            cache_control: default_cache_control(path).to_owned(),
            content_encoding: None,
            metadata: BTreeMap::new(),
        };
        for (matcher, rule) in &self.rules {
            if !matcher.is_match(path) {
                continue;
            }
            if let Some(v) = &rule.cache_control {
                h.cache_control = v.clone();
            }
            if let Some(v) = &rule.content_type {
                h.content_type = v.clone();
            }
            if let Some(v) = &rule.content_encoding {
                h.content_encoding = Some(v.clone());
            }
            for (k, v) in &rule.metadata {
                h.metadata.insert(k.to_ascii_lowercase(), v.clone());
            }
        }
        h
    }
}

/// Content-Type from the extension, with `charset=utf-8` on text types.
pub fn content_type(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".wasm") {
        return "application/wasm".to_owned();
    }
    // The extension as `Path::extension` reads it (none for `.htaccess`), found
    // without parsing the path into components.
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext,
        _ => "",
    };
    let mime = mime_guess::from_ext(ext)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let mime = match mime {
        // mime_guess says application/x-javascript for some extensions; browsers want this.
        "application/x-javascript" => "text/javascript",
        m => m,
    };
    if is_text(mime) {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

fn is_text(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/xml"
                | "application/xhtml+xml"
                | "image/svg+xml"
                | "application/ld+json"
                | "application/rss+xml"
                | "application/atom+xml"
        )
}

/// True for HTML files and `config.json`: they point at the release, so they are
/// revalidated on every load and uploaded last.
pub fn is_entry_point(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".html") || lower.ends_with(".htm") || path == crate::CONFIG_JSON
}

fn default_cache_control(path: &str) -> &'static str {
    if is_entry_point(path) {
        NO_CACHE
    } else if is_hashed(path) {
        IMMUTABLE
    } else {
        SHORT
    }
}

/// True for a Cache-Control that promises the content never changes under its name.
pub fn is_immutable(cache_control: &str) -> bool {
    cache_control
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("immutable"))
}

/// True when the file name carries a content hash, as trunk and most bundlers write
/// them (`app-1f2e3d4c5b6a7988_bg.wasm`, `index-BmRkL4n2.css`): such a file never
/// changes under the same name, so it may be cached forever and kept for old tabs.
pub fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    // The hash follows a name (`app-<hash>`, `style.<hash>`): a stem that is one
    // word (`MyPhoto2024`) is a name, however it is spelled.
    stem.split(['-', '.'])
        .skip(1)
        .map(|t| t.strip_suffix("_bg").unwrap_or(t))
        .any(looks_like_hash)
}

/// A hash token: lower-case hex of 8 to 64 characters with a digit and a letter
/// (trunk, webpack), or exactly 8 characters mixing upper case, lower case and digits
/// (base64url hashes as Vite writes them). Plain words and numbered names are not.
fn looks_like_hash(token: &str) -> bool {
    if !(8..=64).contains(&token.len()) {
        return false;
    }
    let b = token.as_bytes();
    let digit = b.iter().any(u8::is_ascii_digit);
    let hex = b
        .iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    let hex_letter = b.iter().any(|c| (b'a'..=b'f').contains(c));
    let b64 = b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    (hex && digit && hex_letter) || (token.len() == 8 && b64 && digit && upper && lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("app_bg.wasm"), "application/wasm");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("config.json"),
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type("logo.PNG"), "image/png");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        // The extension is the file name's, read as `Path::extension` reads it.
        assert_eq!(
            content_type("v1.2/data.tar.gz"),
            mime_guess::from_ext("gz").first_raw().unwrap_or_default()
        );
        assert_eq!(content_type("docs.v2/README"), "application/octet-stream");
        assert_eq!(
            content_type(".well-known/.htaccess"),
            "application/octet-stream"
        );
        assert_eq!(content_type("a/..css"), "text/css; charset=utf-8");
    }

    #[test]
    fn hashed_names() {
        for hashed in [
            "app-1f2e3d4c5b6a7988_bg.wasm",
            "app-1f2e3d4c5b6a7988.js",
            "assets/index-BmRkL4n2.css",
            "style.3f2a9c1d.css",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "robots.txt",
            "favicon.ico",
            "settings-page.js",
            "config.json",
            "file0001.txt",
            "deadbeef.txt",
            "MyPhoto2024.jpg",
            "photos/IMG20240612.jpg",
            "report-Q3Summary2024.pdf",
            "2f3a9c1d7e.png",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn default_cache_control_by_kind() {
        let rules = HeaderRules::default();
        assert_eq!(rules.for_path("index.html").cache_control, NO_CACHE);
        assert_eq!(rules.for_path("docs/page.html").cache_control, NO_CACHE);
        assert_eq!(rules.for_path("config.json").cache_control, NO_CACHE);
        assert_eq!(
            rules.for_path("app-1f2e3d4c5b6a7988.js").cache_control,
            IMMUTABLE
        );
        assert_eq!(rules.for_path("robots.txt").cache_control, SHORT);
    }

    #[test]
    fn later_rules_override() {
        let rules = HeaderRules::new(&[
            HeaderRule {
                glob: "*.txt".into(),
                cache_control: Some("max-age=1".into()),
                ..Default::default()
            },
            HeaderRule {
                glob: "docs/**".into(),
                cache_control: Some("max-age=2".into()),
                content_encoding: Some("gzip".into()),
                metadata: [("Team".to_owned(), "web".to_owned())].into(),
                ..Default::default()
            },
        ])
        .unwrap();
        assert_eq!(rules.for_path("robots.txt").cache_control, "max-age=1");
        let h = rules.for_path("docs/a.txt");
        assert_eq!(h.cache_control, "max-age=2");
        assert_eq!(h.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(h.metadata["team"], "web");
        assert_eq!(rules.for_path("index.html").cache_control, NO_CACHE);
    }
}
