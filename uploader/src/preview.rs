//! `uploader preview`: serve a stage from the bucket the way CloudFront would.
//!
//! Every response is read from S3 through the same API CloudFront's origin uses, so a
//! preview shows exactly what is deployed: `/` serves `index.html` (the default root
//! object; a path ending in `/` serves that folder's `index.html`), the stored
//! Content-Type, Cache-Control and Content-Encoding pass through, and a missing object
//! is a 404.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::store::Bucket;

#[derive(Clone)]
struct Site {
    bucket: Bucket,
    prefix: String,
}

/// The preview server's routes for one stage.
pub fn router(bucket: Bucket, prefix: String) -> axum::Router {
    axum::Router::new()
        .fallback(serve)
        .with_state(Site { bucket, prefix })
}

/// The object key for a request path, or `None` for a path no object can have.
pub fn key_for(prefix: &str, uri_path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(uri_path)
        .decode_utf8()
        .ok()?;
    let rel = decoded.strip_prefix('/').unwrap_or(&decoded);
    if rel.split('/').any(|seg| seg == "..") {
        return None;
    }
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_owned()
    };
    Some(format!("{prefix}{rel}"))
}

/// True for a `Host` that names this machine's loopback (`127.0.0.1`, `localhost`,
/// `[::1]`, with any port). Anything else is a page on another site reaching the
/// preview through DNS rebinding, and gets nothing.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn serve(
    State(site): State<Site>,
    method: Method,
    uri: Uri,
    request_headers: HeaderMap,
) -> Response {
    let host = request_headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this preview answers only requests for 127.0.0.1 or localhost\n",
        )
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
    }
    let Some(key) = key_for(&site.prefix, uri.path()) else {
        return not_found();
    };
    match site.bucket.get(&key).await {
        Ok(Some(obj)) => {
            let mut headers = HeaderMap::new();
            let mut set = |name: header::HeaderName, value: &str| {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(name, v);
                }
            };
            set(header::CONTENT_TYPE, &obj.headers.content_type);
            if !obj.headers.cache_control.is_empty() {
                set(header::CACHE_CONTROL, &obj.headers.cache_control);
            }
            if let Some(enc) = &obj.headers.content_encoding {
                set(header::CONTENT_ENCODING, enc);
            }
            if let Some(etag) = &obj.etag {
                set(header::ETAG, etag);
            }
            if let Some(len) = obj.content_length {
                set(header::CONTENT_LENGTH, &len.to_string());
            }
            if method == Method::HEAD {
                return (StatusCode::OK, headers).into_response();
            }
            (StatusCode::OK, headers, Body::from_stream(obj.body)).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => {
            tracing::error!(%key, "preview: {e}");
            (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response()
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 Not Found\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{is_loopback_host, key_for};

    #[test]
    fn only_loopback_host_names_are_served() {
        for ok in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST",
            "[::1]:8000",
            "127.0.0.2",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example.com",
            "evil.example.com:8000",
            "10.0.0.1:8000",
            "",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn keys_for_paths() {
        assert_eq!(key_for("dev/", "/").as_deref(), Some("dev/index.html"));
        assert_eq!(
            key_for("dev/", "/docs/").as_deref(),
            Some("dev/docs/index.html")
        );
        assert_eq!(key_for("", "/app.js").as_deref(), Some("app.js"));
        assert_eq!(
            key_for("dev/", "/a%20b/%C3%BC+.txt").as_deref(),
            Some("dev/a b/ü+.txt")
        );
        assert_eq!(key_for("dev/", "/../prod/index.html"), None);
    }
}
