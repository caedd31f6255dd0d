//! Shared helpers: start the real router on an ephemeral loopback port and talk
//! to it over HTTP with reqwest, exactly as the browser app and harnesses do.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use api::Store;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The moto server behind a DynamoDB store, shared by the tests running now.
    _moto: Option<Arc<testkit::Server>>,
}

/// True in the test binary that runs the contract suite against DynamoDB
/// (`http_api_dynamodb.rs` includes `http_api.rs` unchanged).
pub fn dynamodb_wanted() -> bool {
    env!("CARGO_CRATE_NAME").ends_with("dynamodb")
}

/// One moto for the tests of this binary that run at the same time; it stops
/// when the last of them drops its handle (also when a test fails).
pub fn shared_moto() -> Arc<testkit::Server> {
    static MOTO: Mutex<Weak<testkit::Server>> = Mutex::new(Weak::new());
    let mut guard = MOTO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(moto) = guard.upgrade() {
        return moto;
    }
    let moto = Arc::new(testkit::moto().expect("start moto (run scripts/setup.sh)"));
    *guard = Arc::downgrade(&moto);
    moto
}

/// A DynamoDB client for a local moto server.
pub fn dynamodb_client(moto: &testkit::Server) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&testkit::sdk_config(&moto.url))
}

/// A fresh, empty table on moto with the store's key schema.
pub async fn fresh_table(client: &aws_sdk_dynamodb::Client) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let table = format!(
        "todos-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    api::create_dynamodb_table(client, &table)
        .await
        .expect("create table");
    table
}

impl Server {
    pub async fn start(store: Store) -> Server {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, api::router(store))
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("server failed");
        });
        Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _moto: None,
        }
    }

    /// A server on an empty store: in-memory SQLite, or a fresh DynamoDB table
    /// on moto in the DynamoDB run of the suite.
    pub async fn in_memory() -> Server {
        if dynamodb_wanted() {
            return Server::dynamodb().await;
        }
        Server::start(Store::open_in_memory().expect("in-memory store")).await
    }

    /// A server on a fresh DynamoDB table on (shared) moto.
    pub async fn dynamodb() -> Server {
        let moto = shared_moto();
        let client = dynamodb_client(&moto);
        let table = fresh_table(&client).await;
        let mut server =
            Server::start(Store::dynamodb(client, api::TableSource::Fixed(table))).await;
        server._moto = Some(moto);
        server
    }

    /// Stops the server and waits until it has fully shut down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task panicked");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    /// Sends a raw body with an explicit content type (or none).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.expect("raw request")
    }

    /// Creates a todo and returns it, asserting 201.
    pub async fn create(&self, stage: &str, title: &str) -> Value {
        let res = self
            .post_json(
                &format!("/{stage}/todos"),
                &serde_json::json!({ "title": title }),
            )
            .await;
        json_of(res, StatusCode::CREATED).await
    }

    /// The whole list of a stage, following `Link: rel="next"` through every page.
    pub async fn list(&self, stage: &str) -> Vec<Value> {
        let mut todos = Vec::new();
        let mut url = self.url(&format!("/{stage}/todos"));
        for _ in 0..1000 {
            let (page, next) = self.page(&url).await;
            todos.extend(page);
            match next {
                Some(next) => url = next,
                None => return todos,
            }
        }
        panic!("more than 1000 pages: a Link loop?")
    }

    /// One page of a list at the absolute `url`: its todos and the absolute URL
    /// of the next page (`Link: <…>; rel="next"`, resolved against `url`).
    pub async fn page(&self, url: &str) -> (Vec<Value>, Option<String>) {
        let res = self.client.get(url).send().await.expect("GET page");
        let next = next_link(&res);
        let v = json_of(res, StatusCode::OK).await;
        (v.as_array().expect("a page is an array").clone(), next)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The target of the response's `Link` with `rel="next"` (RFC 8288), resolved
/// against the request URL as a browser would; `None` without one.
pub fn next_link(res: &Response) -> Option<String> {
    let mut found = None;
    for value in res.headers().get_all("link") {
        let value = value.to_str().expect("Link is ASCII");
        for part in value.split(',') {
            let (target, params) = part
                .trim()
                .strip_prefix('<')
                .and_then(|rest| rest.split_once('>'))
                .unwrap_or_else(|| panic!("malformed Link header: {value:?}"));
            let next = params
                .split(';')
                .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
            if next {
                assert!(found.is_none(), "two rel=next links: {value:?}");
                let url = res.url().join(target).expect("Link target resolves");
                found = Some(url.to_string());
            }
        }
    }
    found
}

/// Asserts the status and a JSON content type, and returns the parsed body.
pub async fn json_of(res: Response, expected: StatusCode) -> Value {
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.expect("body");
    assert_eq!(status, expected, "unexpected status; body: {text}");
    assert!(
        ct.starts_with("application/json"),
        "expected a JSON content type, got {ct:?}; body: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// Asserts an error response: status, JSON shape `{code, message}` and code.
pub async fn assert_error(res: Response, expected: StatusCode, code: &str) -> String {
    let v = json_of(res, expected).await;
    let obj = v.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 2, "error body has exactly code and message: {v}");
    assert_eq!(v["code"], code, "wrong error code in {v}");
    let message = v["message"].as_str().expect("message is a string");
    assert!(
        message.len() > 10,
        "message should be a sentence: {message:?}"
    );
    message.to_owned()
}
