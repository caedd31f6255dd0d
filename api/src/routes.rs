//! HTTP routing, extractors and handlers.
//!
//! Handlers stay thin: extractors turn the request into validated values (or an
//! [`ApiError`]), the [`Store`] does the work, and the result is serialised.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::error::{ApiError, source_text};
use crate::model::{CreateTodo, PatchTodo, SetAllCompleted, Stage, Title, Todo};
use crate::page::{Cursor, Limit, PageQueryError};
use crate::store::Store;

use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// Largest request body read. Valid bodies are a few KiB at most (500 chars of
/// up to 4 bytes each), so anything near this is a mistake or abuse.
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// How long browsers may cache a preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Which browser origins may call the API (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (`Access-Control-Allow-Origin: *`): the local `todo-api`, which only
    /// listens on loopback and serves a front end from another port.
    AnyOrigin,
    /// Behind API Gateway: only the site origin named by this stage variable of the
    /// stage that received the request (`allowedOrigin`, e.g.
    /// `https://d111.cloudfront.net`), so the dev site cannot call the prod API. A stage
    /// without the variable allows loopback origins only (a local gateway in tests and
    /// development), never a public one.
    StageVariable(String),
}

/// Builds the complete application: routes, JSON fallbacks, CORS for any origin and
/// request logs (the local server; see [`router_with`]).
pub fn router(store: Store) -> Router {
    router_with(store, Cors::AnyOrigin)
}

/// [`router`] with the given CORS policy (`bootstrap` uses [`Cors::StageVariable`]).
pub fn router_with(store: Store, policy: Cors) -> Router {
    let origins = match policy {
        Cors::AnyOrigin => AllowOrigin::any(),
        Cors::StageVariable(variable) => {
            AllowOrigin::predicate(move |origin: &HeaderValue, parts: &Parts| {
                let configured = parts
                    .stage_variables_ref()
                    .and_then(|v| v.first(&variable))
                    .map(str::to_owned);
                origin
                    .to_str()
                    .is_ok_and(|o| origin_allowed(o, configured.as_deref()))
            })
        }
    };
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::CONTENT_TYPE])
        // The list's next page is in `Link`; without this a browser hides it from the app.
        .expose_headers([header::LINK])
        .max_age(CORS_MAX_AGE);

    // Request lines at INFO so the default log level shows traffic.
    let trace = TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));

    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/{stage}/todos",
            get(list_todos)
                .post(create_todo)
                .patch(set_all_completed)
                .delete(clear_completed),
        )
        .route(
            "/{stage}/todos/{id}",
            get(get_todo).patch(update_todo).delete(delete_todo),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(route_not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(trace)
        .layer(cors)
        .with_state(store)
}

/// Does a request from `origin` get CORS access, given the stage's configured site
/// origin? Exactly that origin (a trailing slash and the case of scheme and host
/// ignored); without one, loopback origins only.
fn origin_allowed(origin: &str, configured: Option<&str>) -> bool {
    match configured.map(|c| c.trim().trim_end_matches('/')) {
        Some(c) if !c.is_empty() => origin.eq_ignore_ascii_case(c),
        _ => {
            let Some(rest) = origin.strip_prefix("http://") else {
                return false;
            };
            let host = match rest.rsplit_once(':') {
                Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
                _ => rest,
            };
            matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        }
    }
}

// ---------------------------------------------------------------------------
// Extractors: each one fails with an `ApiError`, so axum's plain-text
// rejections never reach a client.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct StageSegment {
    stage: String,
}

#[derive(Deserialize)]
struct TodoSegments {
    stage: String,
    id: String,
}

fn parse_stage(raw: String) -> Result<Stage, ApiError> {
    Stage::parse(&raw).ok_or(ApiError::InvalidStage(raw))
}

/// The validated `{stage}` path segment.
///
/// Validated in an extractor (not in the handler) so an invalid stage is a 404
/// even when the body is also bad: the resource does not exist either way.
struct StageParam(Stage);

impl<S: Send + Sync> FromRequestParts<S> for StageParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(StageSegment { stage }) = Path::from_request_parts(parts, state).await?;
        Ok(StageParam(parse_stage(stage)?))
    }
}

/// The validated `{stage}` and the opaque `{id}` of `/{stage}/todos/{id}`.
struct TodoParam {
    stage: Stage,
    id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for TodoParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(TodoSegments { stage, id }) = Path::from_request_parts(parts, state).await?;
        Ok(TodoParam {
            stage: parse_stage(stage)?,
            id,
        })
    }
}

/// The store that serves this request.
///
/// Behind API Gateway (the Lambda adapter put the event's request context and
/// stage variables into the request's extensions) a DynamoDB store picks the
/// table named by the stage's variable; anywhere else the store is used as it is.
/// Placed after the path extractors in every handler, so an invalid stage is a
/// 404 before any configuration problem.
struct Db(Store);

impl FromRequestParts<Store> for Db {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, store: &Store) -> Result<Self, Self::Rejection> {
        let gateway_stage = match parts.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
            _ => None,
        };
        let variables = parts.stage_variables_ref();
        let lookup = |name: &str| variables.and_then(|v| v.first(name)).map(str::to_owned);
        match store.for_request(gateway_stage.as_deref(), &lookup) {
            Ok(store) => Ok(Db(store)),
            Err(e) => Err(ApiError::StageNotConfigured(e)),
        }
    }
}

/// `?limit=N&cursor=C` of `GET /{stage}/todos`, validated: a bad value is a 400
/// `invalid_query` naming the fix, before any store is asked. Other parameters
/// are ignored; a repeated `limit` or `cursor` is refused (which one counts
/// would be a guess).
struct PageParams {
    limit: Limit,
    after: Option<Cursor>,
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| PageQueryError::Malformed(source_text(&e.body_text())))?;
        Ok(PageParams {
            limit: Limit::parse(query.limit.as_deref())?,
            after: query.cursor.as_deref().map(Cursor::decode).transpose()?,
        })
    }
}

/// A JSON body with the contract's JSON errors instead of axum's plain-text
/// rejections.
///
/// Unlike `axum::Json`, the whole body is checked for JSON syntax before it is
/// matched against `T`: serde reports the first problem it meets while
/// streaming, so `{"title": ` could otherwise surface as "unknown field" rather
/// than as the malformed JSON it is.
struct ApiJson<T>(T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::InvalidContentType);
        }
        let bytes = Bytes::from_request(req, state).await?;
        serde_json::from_slice::<IgnoredAny>(&bytes)
            .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        // `Json::from_bytes` reports type errors with the field path ("title: ...").
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// `application/json` or any `application/*+json`, parameters (charset) ignored;
/// the same rule as `axum::Json`.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(Ok(value)) = headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((kind, subtype)) => {
            kind == "application" && (subtype == "json" || subtype.ends_with("+json"))
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// Readiness probe for test harnesses: plain `ok`, no database access, so it
/// answers as soon as the listener is up.
async fn healthz() -> &'static str {
    "ok"
}

/// One page of the list. When more todos follow, `Link: <?limit=N&cursor=C>;
/// rel="next"` names the next page as a query-only relative reference: it
/// resolves against whatever URL the client used (an API Gateway stage, a
/// custom domain's base path, the dev server's `/api/` proxy), where a path
/// built from what this router sees could point elsewhere.
async fn list_todos(
    StageParam(stage): StageParam,
    Db(store): Db,
    PageParams { limit, after }: PageParams,
) -> Result<impl IntoResponse, ApiError> {
    let page = store.list_page(&stage, limit, after.as_ref()).await?;
    let mut headers = HeaderMap::new();
    if let Some(next) = page.next {
        let link = format!(
            "<?limit={}&cursor={}>; rel=\"next\"",
            limit.get(),
            next.encode()
        );
        // Digits and base64url only, so this never fails; if it ever did, a
        // missing Link would silently truncate the client's list, so fail loudly.
        let value = HeaderValue::from_str(&link).map_err(|_| {
            ApiError::Bug(format!("the Link header {link:?} is not a header value"))
        })?;
        headers.insert(header::LINK, value);
    }
    Ok((headers, Json(page.todos)))
}

async fn create_todo(
    StageParam(stage): StageParam,
    Db(store): Db,
    ApiJson(body): ApiJson<CreateTodo>,
) -> Result<impl IntoResponse, ApiError> {
    let title = Title::parse(&body.title)?;
    let todo = store
        .create(&stage, title, body.completed.unwrap_or(false))
        .await?;
    Ok((StatusCode::CREATED, Json(todo)))
}

async fn get_todo(
    TodoParam { stage, id }: TodoParam,
    Db(store): Db,
) -> Result<Json<Todo>, ApiError> {
    match store.get(&stage, &id).await? {
        Some(todo) => Ok(Json(todo)),
        None => Err(not_found(&stage, id)),
    }
}

async fn update_todo(
    TodoParam { stage, id }: TodoParam,
    Db(store): Db,
    ApiJson(body): ApiJson<PatchTodo>,
) -> Result<Json<Todo>, ApiError> {
    let changes = body.validate()?;
    match store.update(&stage, &id, changes).await? {
        Some(todo) => Ok(Json(todo)),
        None => Err(not_found(&stage, id)),
    }
}

async fn delete_todo(
    TodoParam { stage, id }: TodoParam,
    Db(store): Db,
) -> Result<StatusCode, ApiError> {
    if store.delete(&stage, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&stage, id))
    }
}

#[derive(Serialize)]
struct Updated {
    updated: usize,
}

/// Toggle-all: one request instead of one PATCH per todo. Answers how many
/// todos changed, not the list: that would be an unbounded response again (the
/// app ignores the body and keeps its own list).
async fn set_all_completed(
    StageParam(stage): StageParam,
    Db(store): Db,
    ApiJson(body): ApiJson<SetAllCompleted>,
) -> Result<Json<Updated>, ApiError> {
    let updated = store.set_all_completed(&stage, body.completed).await?;
    Ok(Json(Updated { updated }))
}

#[derive(Deserialize)]
struct ClearQuery {
    completed: Option<String>,
}

#[derive(Serialize)]
struct Deleted {
    deleted: usize,
}

/// Clear-completed. The explicit `?completed=true` is required so that a
/// `DELETE` on the collection can never wipe a whole stage by accident.
async fn clear_completed(
    StageParam(stage): StageParam,
    Db(store): Db,
    query: Result<Query<ClearQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Query(query) = query?;
    if query.completed.as_deref() != Some("true") {
        return Err(ApiError::InvalidQuery(format!(
            "DELETE /{0}/todos only clears completed todos and requires the query ?completed=true; add it, or use DELETE /{0}/todos/{{id}} to delete a single todo",
            stage.as_str()
        )));
    }
    let deleted = store.delete_completed(&stage).await?;
    Ok(Json(Deleted { deleted }))
}

fn not_found(stage: &Stage, id: String) -> ApiError {
    ApiError::TodoNotFound {
        stage: stage.as_str().to_owned(),
        id,
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_origin_admits_exactly_that_site() {
        let site = Some("https://d111.cloudfront.net/");
        assert!(origin_allowed("https://d111.cloudfront.net", site));
        assert!(origin_allowed("https://D111.cloudfront.net", site));
        for other in [
            "https://d222.cloudfront.net",
            "http://d111.cloudfront.net",
            "https://d111.cloudfront.net.evil.example",
            "http://127.0.0.1:8080",
        ] {
            assert!(!origin_allowed(other, site), "{other}");
        }
    }

    #[test]
    fn without_a_stage_origin_only_loopback_is_admitted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "http://[::1]:9000",
        ] {
            assert!(origin_allowed(ok, None), "{ok}");
            assert!(origin_allowed(ok, Some(" ")), "{ok}");
        }
        for bad in [
            "https://d111.cloudfront.net",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example:80",
            "null",
        ] {
            assert!(!origin_allowed(bad, None), "{bad}");
        }
    }

    fn with_ct(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(has_json_content_type(&with_ct(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "text/json",
            "",
        ] {
            assert!(!has_json_content_type(&with_ct(bad)), "{bad}");
        }
        assert!(!has_json_content_type(&HeaderMap::new()));
    }
}
