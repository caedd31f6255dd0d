//! The Lambda service and API Gateway, small and local, to run the real
//! `bootstrap` process as AWS does:
//!
//! - [`Runtime`]: the Lambda Runtime API (`/2018-06-01/runtime/...`) a function
//!   polls for events and answers, with the process started the way the
//!   `provided.al2023` runtime starts it ([`Runtime::spawn_function`]);
//! - [`Gateway`]: REST API stages in front of it: an HTTP request to
//!   `/{stage}/...` becomes an API Gateway REST (v1) proxy event with that
//!   stage's stage variables, and the function's answer becomes the HTTP response.
//!
//! Nothing is mocked on the function's side: it is the same binary, speaking the
//! same protocol, as in AWS.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// The Runtime API version path every request uses.
const API: &str = "/2018-06-01/runtime";

/// The function's answer to one invocation.
#[derive(Debug)]
pub enum Outcome {
    /// `POST .../invocation/{id}/response`: the handler's result (JSON).
    Response(Bytes),
    /// `POST .../invocation/{id}/error`: the handler failed.
    Error(Bytes),
}

struct Invocation {
    id: String,
    event: Value,
    reply: oneshot::Sender<Outcome>,
}

struct RuntimeState {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// When the first `GET .../invocation/next` arrived: the end of init.
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
}

/// A local Lambda Runtime API on 127.0.0.1; stops when dropped.
pub struct Runtime {
    /// `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    state: Arc<RuntimeState>,
    queue: mpsc::UnboundedSender<Invocation>,
    ids: AtomicU64,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Runtime {
    /// Starts the Runtime API (inside a tokio runtime).
    pub async fn start() -> Result<Runtime> {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(RuntimeState {
            queue: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/response"), post(respond))
            .route(&format!("{API}/invocation/{{id}}/error"), post(fail))
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the Runtime API")?;
        let address = listener.local_addr()?.to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Runtime {
            address,
            state,
            queue: tx,
            ids: AtomicU64::new(1),
            shutdown: Some(stop),
        })
    }

    /// Starts `bootstrap` as the `provided.al2023` runtime does (the Lambda
    /// environment variables, this Runtime API), with `env` added (AWS endpoint,
    /// credentials …). Its stdout and stderr go to `log`.
    pub fn spawn_function(
        &self,
        bootstrap: &Path,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Function> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bootstrap);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "todo-api")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/todo-api")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("_HANDLER", "bootstrap")
            .env(
                "LAMBDA_TASK_ROOT",
                bootstrap.parent().unwrap_or(Path::new("/")),
            )
            .env("TZ", ":UTC");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {}", bootstrap.display()))?;
        Ok(Function {
            child,
            started,
            log: log.to_owned(),
        })
    }

    /// Waits until the function asks for its first event: init is over. Returns
    /// the moment it asked.
    pub async fn wait_initialized(
        &self,
        function: &mut Function,
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = *lock(&self.state.first_next) {
                return Ok(at);
            }
            if let Some(e) = lock(&self.state.init_error).clone() {
                bail!(
                    "the function reported an init error: {e}\n{}",
                    function.log_text()
                );
            }
            if let Some(status) = function.child.try_wait()? {
                bail!(
                    "the function exited with {status} during init:\n{}",
                    function.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the function did not ask for an event within {timeout:?}:\n{}",
                    function.log_text()
                );
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Result<Outcome> {
        let id = format!(
            "00000000-0000-4000-8000-{:012x}",
            self.ids.fetch_add(1, Ordering::Relaxed)
        );
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Invocation { id, event, reply })
            .map_err(|_| anyhow::anyhow!("the Runtime API has stopped"))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => bail!("the Runtime API stopped before the function answered"),
            Err(_) => bail!("the function did not answer within {timeout:?}"),
        }
    }

    /// Stops serving; invocations waiting for an answer fail at once.
    pub fn stop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        lock(&self.state.pending).clear();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /invocation/next`: blocks until there is an event.
async fn next(State(state): State<Arc<RuntimeState>>) -> Response {
    {
        let mut first = lock(&state.first_next);
        if first.is_none() {
            *first = Some(Instant::now());
        }
    }
    let invocation = { state.queue.lock().await.recv().await };
    let Some(Invocation { id, event, reply }) = invocation else {
        return StatusCode::GONE.into_response();
    };
    lock(&state.pending).insert(id.clone(), reply);
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:todo-api".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (headers, event.to_string()).into_response()
}

async fn respond(
    State(state): State<Arc<RuntimeState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&state, &id, Outcome::Response(body))
}

async fn fail(
    State(state): State<Arc<RuntimeState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&state, &id, Outcome::Error(body))
}

fn answer(state: &RuntimeState, id: &str, outcome: Outcome) -> StatusCode {
    match lock(&state.pending).remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn init_error(State(state): State<Arc<RuntimeState>>, body: Bytes) -> StatusCode {
    *lock(&state.init_error) = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// A running function process; killed when dropped.
pub struct Function {
    child: Child,
    /// When the process was spawned: the start of init.
    pub started: Instant,
    pub log: std::path::PathBuf,
}

impl Function {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.stop();
    }
}

/// API Gateway REST stages on 127.0.0.1 in front of a [`Runtime`]: the real
/// `bootstrap` only ever sees REST v1 proxy events.
pub struct Gateway {
    /// `http://127.0.0.1:<port>`; a stage's base URL is `{url}/{stage}`.
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
}

struct GatewayState {
    runtime: Arc<Runtime>,
    /// Stage name → its stage variables.
    stages: HashMap<String, HashMap<String, String>>,
}

impl Gateway {
    /// Serves `stages` (name → stage variables) through `runtime`.
    pub async fn start(
        runtime: Arc<Runtime>,
        stages: HashMap<String, HashMap<String, String>>,
    ) -> Result<Gateway> {
        let state = Arc::new(GatewayState { runtime, stages });
        let app = Router::new().fallback(gateway).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the gateway")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Gateway {
            url,
            shutdown: Some(stop),
        })
    }

    /// Stops accepting requests (clients then get connection errors).
    pub fn stop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn gateway(
    State(state): State<Arc<GatewayState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full_path = uri.path().to_owned();
    let trimmed = full_path.trim_start_matches('/');
    let (stage, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let Some(variables) = state.stages.get(stage) else {
        // What API Gateway answers for a path no stage or resource matches.
        return gateway_error(StatusCode::FORBIDDEN, "Missing Authentication Token");
    };
    let event = rest_v1_event(
        &method,
        stage,
        &format!("/{rest}"),
        uri.query(),
        &headers,
        &body,
        variables,
    );
    let outcome = match state.runtime.invoke(event, Duration::from_secs(29)).await {
        Ok(o) => o,
        Err(_) => return gateway_error(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out"),
    };
    match outcome {
        Outcome::Response(bytes) => proxy_response(&bytes)
            .unwrap_or_else(|| gateway_error(StatusCode::BAD_GATEWAY, "Internal server error")),
        Outcome::Error(_) => gateway_error(StatusCode::BAD_GATEWAY, "Internal server error"),
    }
}

/// The REST v1 proxy event API Gateway sends for a `{proxy+}` resource with ANY.
pub fn rest_v1_event(
    method: &Method,
    stage: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    stage_variables: &HashMap<String, String>,
) -> Value {
    let mut single = serde_json::Map::new();
    let mut multi: serde_json::Map<String, Value> = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        single.insert(name.to_string(), json!(value));
        match multi.get_mut(name.as_str()).and_then(Value::as_array_mut) {
            Some(values) => values.push(json!(value)),
            None => {
                multi.insert(name.to_string(), json!([value]));
            }
        }
    }
    let mut query_single = serde_json::Map::new();
    let mut query_multi: serde_json::Map<String, Value> = serde_json::Map::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        query_single.insert(k.clone(), json!(v));
        match query_multi.get_mut(&k).and_then(Value::as_array_mut) {
            Some(values) => values.push(json!(v)),
            None => {
                query_multi.insert(k, json!([v]));
            }
        }
    }
    let none_if_empty = |m: serde_json::Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    let (body, base64) = if body.is_empty() {
        (Value::Null, false)
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => (json!(text), false),
            Err(_) => (json!(base64_encode(body)), true),
        }
    };
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let stage_variables = if stage_variables.is_empty() {
        Value::Null
    } else {
        json!(stage_variables)
    };
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.as_str(),
        "headers": none_if_empty(single),
        "multiValueHeaders": none_if_empty(multi),
        "queryStringParameters": none_if_empty(query_single.clone()),
        "multiValueQueryStringParameters": none_if_empty(query_multi),
        "pathParameters": { "proxy": path.trim_start_matches('/') },
        "stageVariables": stage_variables,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "proxy0",
            "stage": stage,
            "requestId": format!("local-{epoch_ms}"),
            "identity": { "sourceIp": "127.0.0.1" },
            "resourcePath": "/{proxy+}",
            "httpMethod": method.as_str(),
            "apiId": "local00000",
            "path": format!("/{stage}{path}"),
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": epoch_ms,
            "domainName": "127.0.0.1"
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

/// Turns the function's REST v1 proxy response into HTTP; `None` when it is
/// not one (API Gateway answers 502 then).
fn proxy_response(bytes: &[u8]) -> Option<Response> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let status = StatusCode::from_u16(u16::try_from(v.get("statusCode")?.as_u64()?).ok()?).ok()?;
    let mut headers = HeaderMap::new();
    if let Some(single) = v.get("headers").and_then(Value::as_object) {
        for (k, val) in single {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(k.as_bytes()),
                val.as_str().map(HeaderValue::from_str),
            ) {
                headers.insert(name, value);
            }
        }
    }
    if let Some(multi) = v.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vals) in multi {
            let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
                continue;
            };
            headers.remove(&name);
            for val in vals.as_array().into_iter().flatten() {
                if let Some(Ok(value)) = val.as_str().map(HeaderValue::from_str) {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    let text = v.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if v.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        base64_decode(text)?
    } else {
        text.as_bytes().to_vec()
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (API Gateway's encoding of binary bodies).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(B64[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0xff, 0, 0x80],
        ] {
            let e = base64_encode(data);
            assert_eq!(base64_decode(&e).as_deref(), Some(data), "{e}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }
}
