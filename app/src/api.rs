//! All HTTP of the app: the runtime config and the todo API.
//!
//! Requests are sent and answered through gloo-net's `fetch` wrapper (its `http`
//! feature only). Each request is the `web_sys::Request` gloo-net sends, made
//! in one step (see [`send`]) rather than by gloo-net's `RequestBuilder`, whose
//! query-string support costs every request a second `Request`, a `URL` and
//! four string copies between JS and wasm. JSON is read and written with the
//! browser's own `JSON` object (`js_sys::JSON` + `Reflect`) instead of
//! serde/serde_json: the handful of fields we need do not justify shipping a
//! JSON parser in the wasm bundle (which is also why gloo-net's `json` feature
//! is off).
use std::fmt;

use gloo_net::http::{Request, Response};
use js_sys::{JSON, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCache, RequestInit};

use crate::config::{Config, ConfigError};
use crate::model::{Patch, ServerTodo};

/// Why a call to the todo API failed. `Display` is the text shown to the user.
#[derive(Clone, Debug)]
pub enum ApiError {
    /// Non-2xx answer; `message` is the API's `{"message": …}` when it sent one.
    Http {
        status: u16,
        message: Option<String>,
    },
    /// No answer at all (API down, CORS, offline).
    Network(String),
    /// A 2xx answer whose body is not what the contract says.
    BadResponse(&'static str),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Http {
                message: Some(m), ..
            } => f.write_str(m),
            ApiError::Http {
                status,
                message: None,
            } => {
                write!(f, "The todo API answered with HTTP {status}.")
            }
            ApiError::Network(detail) => write!(f, "Could not reach the todo API ({detail})."),
            ApiError::BadResponse(what) => {
                write!(f, "The todo API sent an unexpected answer ({what}).")
            }
        }
    }
}

/// Text of a rejected promise / thrown JS error (e.g. "Failed to fetch").
fn js_error_text(err: &JsValue) -> String {
    if let Some(e) = err.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    err.as_string()
        .unwrap_or_else(|| "unknown error".to_owned())
}

/// `obj[key]`, or `None` when `obj` is not an object or the key is absent
/// (`Reflect.get` throws on a non-object, and the error becomes `None`).
fn field(obj: &JsValue, key: &JsValue) -> Option<JsValue> {
    Reflect::get(obj, key)
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn str_field(obj: &JsValue, key: &str) -> Option<String> {
    field(obj, &JsValue::from_str(key)).and_then(|v| v.as_string())
}

/// The text of a failed request (e.g. "Failed to fetch"), for the messages.
/// Not `to_string()`: that would bring the Display of every gloo-net error,
/// serde_json's included, into the bundle.
fn gloo_error_text(err: gloo_net::Error) -> String {
    match err {
        gloo_net::Error::JsError(e) => e.message,
        gloo_net::Error::GlooError(message) => message,
        // Only with gloo-net's `json` feature (on for leptos's server_fn, not
        // used here): a serde error, which no call of this module can cause.
        #[allow(unreachable_patterns)]
        _ => "unexpected response".to_owned(),
    }
}

/// Sends one request, `body` as JSON, with gloo-net. `Err` when there was no
/// HTTP answer at all, or the request could not be made (a URL the browser
/// refuses, a body that is not JSON).
///
/// The request is one `new Request(url, init)`: the URLs here are whole (the
/// API's, or `config.json` relative to the page, which `Request` resolves), so
/// gloo-net's `RequestBuilder` has nothing to add, and its query handling (a
/// throwaway `Request` and a `URL` per request) is a large part of a toggle's
/// script time outside `fetch` itself.
async fn send(
    method: &str,
    url: &str,
    body: Option<&JsValue>,
    cache: RequestCache,
) -> Result<Response, String> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_cache(cache);
    if let Some(body) = body {
        let json = JSON::stringify(body).map_err(|e| js_error_text(&e))?;
        let headers = Object::new();
        set(
            &headers,
            "Content-Type",
            &JsValue::from_str("application/json"),
        );
        init.set_headers(&headers);
        init.set_body(&json);
    }
    let request =
        web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| js_error_text(&e))?;
    Request::from(request).send().await.map_err(gloo_error_text)
}

/// The parsed JSON body, or `None` if it is missing or not JSON. Parsed by the
/// browser straight from the response, never copied into wasm as text.
async fn json_body(response: Response) -> Option<JsValue> {
    let promise = web_sys::Response::from(response).json().ok()?;
    JsFuture::from(promise).await.ok()
}

/// Loads `config.json` from next to the page. The URL is relative on purpose:
/// the same bundle is served under different path prefixes per stage. The
/// default cache mode (the file is served `no-cache`, so it is revalidated
/// anyway) lets this request take over the `<link rel="preload">` of
/// `index.html`, which started it before the wasm had even loaded.
pub async fn load_config() -> Result<Config, ConfigError> {
    let response = send("GET", "config.json", None, RequestCache::Default)
        .await
        .map_err(ConfigError::Network)?;
    if !response.ok() {
        return Err(ConfigError::Http(response.status()));
    }
    let text = response
        .text()
        .await
        .map_err(|e| ConfigError::Network(gloo_error_text(e)))?;
    let json = JSON::parse(&text).map_err(|e| ConfigError::InvalidJson(js_error_text(&e)))?;
    Config::from_fields(str_field(&json, "stage"), str_field(&json, "apiBase"))
}

/// The field names of a todo as JS strings, made once per list rather than
/// once per todo and field (3,000 string conversions at 1,000 todos).
struct TodoKeys([JsValue; 3]);

impl TodoKeys {
    fn new() -> Self {
        TodoKeys(["id", "title", "completed"].map(JsValue::from_str))
    }

    fn parse(&self, v: &JsValue) -> Option<ServerTodo> {
        let [id, title, completed] = &self.0;
        let text = |key| field(v, key).and_then(|v| v.as_string());
        Some(ServerTodo {
            id: text(id)?,
            title: text(title)?,
            completed: field(v, completed)?.as_bool()?,
        })
    }
}

fn parse_todos(v: &JsValue) -> Option<Vec<ServerTodo>> {
    if !js_sys::Array::is_array(v) {
        return None;
    }
    let keys = TodoKeys::new();
    js_sys::Array::from(v)
        .iter()
        .map(|t| keys.parse(&t))
        .collect()
}

/// Todos per list request: the API's largest page, so most lists take one request.
const PAGE_LIMIT: u16 = 1000;

/// Most list pages followed (a million todos at [`PAGE_LIMIT`]).
const MAX_PAGES: usize = 1000;

/// The target of the `rel="next"` link in a `Link` header (RFC 8288):
/// `<target>; rel="next"`, possibly among other links and parameters.
fn next_target(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        is_next.then_some(target)
    })
}

/// `target` (relative or absolute) resolved against `base` by the browser's own
/// `URL`, as RFC 3986 says; `None` when it is not a URL.
fn resolve_url(target: &str, base: &str) -> Option<String> {
    web_sys::Url::new_with_base(target, base)
        .ok()
        .map(|url| url.href())
}

/// Client of the todo API at one base URL (from the runtime config).
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            base: crate::config::normalize_api_base(base),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn todo_url(&self, id: &str) -> String {
        // Ids come from the server, but never trust them to be URL-safe.
        self.url(&format!(
            "/todos/{}",
            String::from(js_sys::encode_uri_component(id))
        ))
    }

    /// Sends a request and turns any non-2xx into [`ApiError::Http`] carrying
    /// the API's `message` when the body has one.
    async fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<&JsValue>,
    ) -> Result<Response, ApiError> {
        // No API answer may come from a cache (the list above all: other tabs
        // and devices change it).
        let response = send(method, url, body, RequestCache::NoStore)
            .await
            .map_err(ApiError::Network)?;
        if response.ok() {
            return Ok(response);
        }
        let status = response.status();
        let message = json_body(response)
            .await
            .and_then(|b| str_field(&b, "message"));
        Err(ApiError::Http { status, message })
    }

    /// The whole list: the API answers it in pages, so this asks for the largest
    /// page and follows each answer's `Link: <…>; rel="next"` until there is none.
    pub async fn list(&self) -> Result<Vec<ServerTodo>, ApiError> {
        let mut url = self.url(&format!("/todos?limit={PAGE_LIMIT}"));
        let mut todos = Vec::new();
        // Bounded, so a server that links in a circle cannot hang the app.
        for _ in 0..MAX_PAGES {
            let response = self.call("GET", &url, None).await?;
            // CORS lets the app see `Link` only because the API exposes it.
            let next = response
                .headers()
                .get("link")
                .as_deref()
                .and_then(next_target)
                .map(|target| {
                    let base = Some(response.url()).filter(|u| !u.is_empty());
                    resolve_url(target, base.as_deref().unwrap_or(&url))
                        .ok_or(ApiError::BadResponse("list page links to an invalid URL"))
                })
                .transpose()?;
            let body = json_body(response)
                .await
                .ok_or(ApiError::BadResponse("list is not JSON"))?;
            todos.extend(
                parse_todos(&body).ok_or(ApiError::BadResponse("list is not an array of todos"))?,
            );
            match next {
                Some(next) => url = next,
                None => return Ok(todos),
            }
        }
        Err(ApiError::BadResponse("list has too many pages"))
    }

    pub async fn create(&self, title: &str) -> Result<ServerTodo, ApiError> {
        let body = Object::new();
        set(&body, "title", &JsValue::from_str(title));
        let response = self.call("POST", &self.url("/todos"), Some(&body)).await?;
        let body = json_body(response)
            .await
            .ok_or(ApiError::BadResponse("created todo is not JSON"))?;
        TodoKeys::new().parse(&body).ok_or(ApiError::BadResponse(
            "created todo lacks id/title/completed",
        ))
    }

    /// PATCH one todo. The answer's body is not needed (the UI already shows
    /// the change), so only the status is checked.
    pub async fn update(&self, id: &str, patch: &Patch) -> Result<(), ApiError> {
        let body = Object::new();
        if let Some(title) = &patch.title {
            set(&body, "title", &JsValue::from_str(title));
        }
        if let Some(completed) = patch.completed {
            set(&body, "completed", &JsValue::from_bool(completed));
        }
        self.call("PATCH", &self.todo_url(id), Some(&body))
            .await
            .map(drop)
    }

    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.call("DELETE", &self.todo_url(id), None)
            .await
            .map(drop)
    }

    /// Toggle-all. Its answer (`{"updated": n}`) is ignored: the UI already
    /// applied the change.
    pub async fn set_all_completed(&self, completed: bool) -> Result<(), ApiError> {
        let body = Object::new();
        set(&body, "completed", &JsValue::from_bool(completed));
        self.call("PATCH", &self.url("/todos"), Some(&body))
            .await
            .map(drop)
    }

    pub async fn clear_completed(&self) -> Result<(), ApiError> {
        self.call("DELETE", &self.url("/todos?completed=true"), None)
            .await
            .map(drop)
    }
}

/// `Reflect::set` on a fresh plain object cannot fail, so its result is ignored.
fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}
