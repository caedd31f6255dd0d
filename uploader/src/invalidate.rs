//! Which CloudFront paths to invalidate — pure, so each rule is tested on its own.
//!
//! The caller passes the paths a CDN may hold stale ([`crate::plan::Plan::
//! changed_paths`]). An `index.html` is also served as its directory (`/` and
//! `/docs/`). Keys are mapped to viewer paths through the stage's key prefix and the
//! distribution's origin path, and encoded as browsers send them. Past CloudFront's
//! limits the list collapses into wildcards.

use crate::plan::is_index;

/// CloudFront accepts at most this many file paths in progress per distribution.
pub const MAX_PATHS: usize = 3000;
/// … and at most this many wildcard paths in progress.
pub const MAX_WILDCARDS: usize = 15;

/// The viewer paths to invalidate for `changed` (paths relative to the stage prefix).
///
/// `origin_path` is the distribution's origin path (`/dev`, or empty): the viewer path
/// of key `dev/index.html` behind origin path `/dev` is `/index.html`. Keys outside the
/// origin path are not served by the distribution and need nothing.
pub fn paths<'a>(
    changed: impl Iterator<Item = &'a str>,
    prefix: &str,
    origin_path: &str,
) -> Vec<String> {
    let origin = origin_path.trim_matches('/');
    let origin = if origin.is_empty() {
        String::new()
    } else {
        format!("{origin}/")
    };
    let mut out = Vec::new();
    for path in changed {
        let key = format!("{prefix}{path}");
        let Some(viewer) = key.strip_prefix(&origin) else {
            continue;
        };
        out.push(format!("/{}", encode(viewer)));
        if is_index(viewer) {
            let dir = &viewer[..viewer.len() - "index.html".len()];
            out.push(format!("/{}", encode(dir)));
        }
    }
    out.sort();
    out.dedup();
    collapse(out, &root_wildcard(prefix, &origin))
}

/// The wildcard covering the whole stage as viewers see it.
fn root_wildcard(prefix: &str, origin: &str) -> String {
    let root = prefix.strip_prefix(origin).unwrap_or("");
    format!("/{}*", encode(root))
}

/// Keeps exact paths while within the limits; otherwise replaces them by wildcards on
/// the deepest directory level that fits, and finally by the stage's root wildcard.
pub fn collapse(paths: Vec<String>, root_wildcard: &str) -> Vec<String> {
    if paths.len() <= MAX_PATHS {
        return paths;
    }
    let max_depth = paths
        .iter()
        .map(|p| p.matches('/').count())
        .max()
        .unwrap_or(1);
    for depth in (1..max_depth).rev() {
        let mut out: Vec<String> = paths
            .iter()
            .map(|p| {
                let segments: Vec<&str> = p[1..].split('/').collect();
                if segments.len() > depth {
                    format!("/{}/*", segments[..depth].join("/"))
                } else {
                    p.clone()
                }
            })
            .collect();
        out.sort();
        out.dedup();
        let wildcards = out.iter().filter(|p| p.ends_with('*')).count();
        if wildcards <= MAX_WILDCARDS && out.len() <= MAX_PATHS {
            return out;
        }
    }
    vec![root_wildcard.to_owned()]
}

/// Encodes a key as a CloudFront invalidation path, the way a browser sends it: only
/// non-ASCII, controls and characters unsafe in a URL path (space, `"`, `#`, `%`, `<`,
/// `>`, `?`, `` ` ``, `{`, `}`, `|`, `\`, `^`, `[`, `]`) are percent-encoded, and `*`,
/// which would be a wildcard. CloudFront matches the path as sent, so `+`, `(`, `)`,
/// `'`, `&`, `=` and the like stay literal: encoded, they would never match what
/// viewers request.
pub fn encode(path: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'|')
        .add(b'\\')
        .add(b'^')
        .add(b'[')
        .add(b']')
        .add(b'*');
    percent_encoding::utf8_percent_encode(path, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_adds_its_directory() {
        let changed = ["index.html", "docs/index.html", "robots.txt"];
        assert_eq!(
            paths(changed.into_iter(), "dev/", "/dev"),
            [
                "/",
                "/docs/",
                "/docs/index.html",
                "/index.html",
                "/robots.txt"
            ]
        );
    }

    #[test]
    fn keys_map_through_prefix_and_origin_path() {
        // A preview under a shared distribution whose origin is the bucket root.
        assert_eq!(
            paths(["index.html"].into_iter(), "previews/pr-42/", ""),
            ["/previews/pr-42/", "/previews/pr-42/index.html"]
        );
        // Origin path /previews: the stage's sub-path below it.
        assert_eq!(
            paths(["config.json"].into_iter(), "previews/pr-42/", "/previews"),
            ["/pr-42/config.json"]
        );
        // A key the distribution does not serve needs no invalidation.
        assert!(paths(["index.html"].into_iter(), "prod/", "/dev").is_empty());
    }

    #[test]
    fn awkward_names_are_encoded_as_browsers_send_them() {
        assert_eq!(
            paths(["a b/ü+&=*?#.txt"].into_iter(), "", ""),
            ["/a%20b/%C3%BC+&=%2A%3F%23.txt"]
        );
        assert_eq!(
            paths(["docs/Q&A (draft) it's 100%.txt"].into_iter(), "", ""),
            ["/docs/Q&A%20(draft)%20it's%20100%25.txt"]
        );
    }

    #[test]
    fn over_the_limit_collapses_to_directory_wildcards_then_root() {
        let many: Vec<String> = (0..4000)
            .map(|i| format!("/docs/d{}/p{i}.html", i % 10))
            .collect();
        let c = collapse(many, "/*");
        assert_eq!(c.len(), 10, "{c:?}");
        assert!(
            c.iter()
                .all(|p| p.starts_with("/docs/d") && p.ends_with("/*"))
        );

        let spread: Vec<String> = (0..4000).map(|i| format!("/d{i}/p.html")).collect();
        assert_eq!(collapse(spread, "/dev/*"), ["/dev/*"]);

        let few: Vec<String> = (0..10).map(|i| format!("/p{i}.html")).collect();
        assert_eq!(collapse(few.clone(), "/*"), few);
    }
}
