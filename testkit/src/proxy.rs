//! A recording, fault-injecting HTTP proxy in front of a real server.
//!
//! Requests pass through unchanged (the `Host` header too, so SigV4 signatures still
//! verify upstream). The proxy counts them, remembers method + path + copy source, and
//! can be told to answer `503 Service Unavailable` from the N-th write on, as a server
//! falling over half-way through a deploy would, or to every write whose path contains
//! a given fragment (one failing API call, e.g. a Lambda `UpdateAlias`). It can also
//! play a store that mangles bodies: it rewrites the body of matching PUTs and drops
//! their checksum headers, as a server that stores `aws-chunked` framing as content
//! and ignores checksums would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::Response;

/// One request as it went by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Decoded path without the query (`/bucket/dev/index.html`).
    pub path: String,
    pub query: String,
    /// `x-amz-copy-source` for server-side copies.
    pub copy_source: Option<String>,
    pub body_len: usize,
    /// `Content-Encoding` as sent (`aws-chunked` marks SDK-framed bodies).
    pub content_encoding: Option<String>,
    /// `x-amz-checksum-sha256` as sent.
    pub checksum_sha256: Option<String>,
}

impl Seen {
    /// PUT, POST and DELETE change the store; GET and HEAD do not.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "DELETE")
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    writes: AtomicUsize,
    /// Fail every write numbered at or after this (1-based); 0 = never.
    fail_from_write: AtomicUsize,
    /// Hold every write this many milliseconds before forwarding it (a slow server).
    delay_writes_ms: AtomicUsize,
    /// … and every read (GET, HEAD).
    delay_reads_ms: AtomicUsize,
    /// Fail every write whose decoded path contains one of these.
    fail_paths: Mutex<Vec<String>>,
    /// Mangle the body of every PUT whose decoded path contains one of these.
    mangle_paths: Mutex<Vec<String>>,
    /// Seconds added to the `Date` header of every answer: a server whose clock is
    /// ahead (or, negative, behind) the client's.
    date_shift_secs: std::sync::atomic::AtomicI64,
}

#[derive(Clone)]
struct Ctx {
    upstream: String,
    client: reqwest::Client,
    shared: Arc<Shared>,
}

/// A running proxy; stops with the test's runtime.
pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:port`) on a free port.
    pub async fn start(upstream: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::default());
        let ctx = Ctx {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .build()
                .context("proxy http client")?,
            shared: shared.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(ctx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, task })
    }

    /// Forgets what was seen so far (counts start again from zero).
    pub fn reset(&self) {
        self.shared.seen.lock().map(|mut s| s.clear()).ok();
        self.shared.writes.store(0, Ordering::SeqCst);
    }

    /// From the `n`-th write on (1-based, counted since the last reset), answer 503.
    pub fn fail_from_write(&self, n: usize) {
        self.shared.fail_from_write.store(n, Ordering::SeqCst);
    }

    /// Holds each write `ms` milliseconds before forwarding it, as a slow server would.
    pub fn delay_writes(&self, ms: usize) {
        self.shared.delay_writes_ms.store(ms, Ordering::SeqCst);
    }

    /// Holds each read (GET, HEAD) `ms` milliseconds before forwarding it.
    pub fn delay_reads(&self, ms: usize) {
        self.shared.delay_reads_ms.store(ms, Ordering::SeqCst);
    }

    /// Answer 503 to every write whose path contains `fragment` (until [`Proxy::heal`]).
    pub fn fail_writes_to(&self, fragment: &str) {
        if let Ok(mut f) = self.shared.fail_paths.lock() {
            f.push(fragment.to_owned());
        }
    }

    /// Answers as a server whose clock is `seconds` ahead of this machine's (negative:
    /// behind) would: every `Date` header is shifted by that much.
    pub fn shift_date(&self, seconds: i64) {
        self.shared.date_shift_secs.store(seconds, Ordering::SeqCst);
    }

    /// Store other bytes than were sent for every PUT whose path contains `fragment`
    /// (until [`Proxy::heal`]): the body goes upstream framed as `aws-chunked` data,
    /// without its checksum headers. Upstream must not check signatures (moto).
    pub fn mangle_writes_to(&self, fragment: &str) {
        if let Ok(mut f) = self.shared.mangle_paths.lock() {
            f.push(fragment.to_owned());
        }
    }

    /// Stops every injected failure.
    pub fn heal(&self) {
        self.shared.fail_from_write.store(0, Ordering::SeqCst);
        for list in [&self.shared.fail_paths, &self.shared.mangle_paths] {
            if let Ok(mut f) = list.lock() {
                f.clear();
            }
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn writes(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_write).collect()
    }
}

async fn forward(State(ctx): State<Ctx>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let seen = Seen {
        method: parts.method.to_string(),
        path: percent_decode(parts.uri.path()),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        copy_source: parts
            .headers
            .get("x-amz-copy-source")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode),
        body_len: body.len(),
        content_encoding: header(&parts.headers, "content-encoding"),
        checksum_sha256: header(&parts.headers, "x-amz-checksum-sha256"),
    };
    let write = seen.is_write();
    let listed = |list: &Mutex<Vec<String>>| {
        list.lock()
            .map(|f| f.iter().any(|frag| seen.path.contains(frag.as_str())))
            .unwrap_or(false)
    };
    let targeted = write && listed(&ctx.shared.fail_paths);
    let mangled = parts.method == Method::PUT && listed(&ctx.shared.mangle_paths);
    let mut headers = parts.headers;
    let body = if mangled {
        let checksums: Vec<_> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-amz-checksum-") || *n == "content-md5")
            .cloned()
            .collect();
        for name in checksums {
            headers.remove(name);
        }
        let mut framed = format!("{:x};chunk-signature=0\r\n", body.len()).into_bytes();
        framed.extend_from_slice(&body);
        framed.extend_from_slice(b"\r\n0\r\n\r\n");
        Bytes::from(framed)
    } else {
        body
    };
    if let Ok(mut s) = ctx.shared.seen.lock() {
        s.push(seen);
    }
    if matches!(parts.method, Method::GET | Method::HEAD) {
        let delay = ctx.shared.delay_reads_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay as u64)).await;
        }
    }
    if write {
        let n = ctx.shared.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let fail_from = ctx.shared.fail_from_write.load(Ordering::SeqCst);
        if targeted || (fail_from > 0 && n >= fail_from) {
            return status(StatusCode::SERVICE_UNAVAILABLE, "injected fault");
        }
        let delay = ctx.shared.delay_writes_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay as u64)).await;
        }
    }
    match send(&ctx, parts.method, &parts.uri, headers, body).await {
        Ok(r) => r,
        Err(e) => status(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

async fn send(
    ctx: &Ctx,
    method: Method,
    uri: &Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    // The body is forwarded whole, with the length it was sent with (signed, and an
    // empty body must still say `content-length: 0`); a mangled one with its own.
    headers.remove("transfer-encoding");
    if let Ok(len) = axum::http::HeaderValue::from_str(&body.len().to_string()) {
        headers.insert("content-length", len);
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path_and_query}", ctx.upstream);
    let upstream = ctx
        .client
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let mut builder = Response::builder().status(upstream.status());
    let shift = ctx.shared.date_shift_secs.load(Ordering::SeqCst);
    for (k, v) in upstream.headers() {
        if k == "date" && shift != 0 {
            if let Some(shifted) = shift_http_date(v, shift) {
                builder = builder.header(k, shifted);
            }
        } else if k != "transfer-encoding" {
            builder = builder.header(k, v);
        }
    }
    let bytes = upstream.bytes().await?;
    Ok(builder.body(Body::from(bytes))?)
}

/// An HTTP date `seconds` later (earlier when negative); `None` if it does not parse.
fn shift_http_date(value: &axum::http::HeaderValue, seconds: i64) -> Option<String> {
    let at = httpdate::parse_http_date(value.to_str().ok()?).ok()?;
    let by = std::time::Duration::from_secs(seconds.unsigned_abs());
    let shifted = if seconds >= 0 {
        at.checked_add(by)?
    } else {
        at.checked_sub(by)?
    };
    Some(httpdate::fmt_http_date(shifted))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn status(code: StatusCode, msg: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code><Message>{msg}</Message></Error>"
    );
    Response::builder()
        .status(code)
        .header("content-type", "application/xml")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
