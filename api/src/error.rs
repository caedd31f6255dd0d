//! The one error type every handler returns, and its JSON rendering.
//!
//! The contract promises that every failure is JSON of the shape
//! `{"code": "<snake_case>", "message": "<sentence naming problem and fix>"}`
//! and that bad input never produces a 500. Funnelling all failures (including
//! axum's own extractor rejections, which are plain text by default) through
//! [`ApiError`] is how that promise is kept in one place.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::model::{MAX_TITLE_CHARS, PatchError, TitleError};
use crate::page::PageQueryError;
use crate::store::{StageConfigError, StoreError};

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "the stage {0:?} is not valid; use 1 to 63 characters of lowercase letters, digits and '-', starting with a letter or digit"
    )]
    InvalidStage(String),

    #[error("invalid title: {0}")]
    InvalidTitle(#[from] TitleError),

    #[error(
        "no todo with id {id:?} exists in stage {stage:?}; list GET /{stage}/todos for the current ids"
    )]
    TodoNotFound { stage: String, id: String },

    #[error("no endpoint exists at {0}; use /{{stage}}/todos, /{{stage}}/todos/{{id}} or /healthz")]
    RouteNotFound(String),

    #[error("the request body is not valid JSON ({0}); send a well-formed JSON object")]
    MalformedJson(String),

    #[error("{0}")]
    InvalidBody(String),

    #[error(
        "the request body must be JSON; send it with the header 'Content-Type: application/json'"
    )]
    InvalidContentType,

    #[error("the request body is too large; todo bodies are small JSON objects, send less data")]
    PayloadTooLarge,

    #[error("{0}")]
    InvalidQuery(String),

    #[error(
        "the method {method} is not allowed on {path}; use one of the methods listed in the Allow header"
    )]
    MethodNotAllowed { method: String, path: String },

    /// The deployment is wrong (an API Gateway stage variable is missing or
    /// invalid): a 500 whose message says what to fix, since only the operator
    /// can, and the log line names the variable and the stage.
    #[error("{0}")]
    StageNotConfigured(#[from] StageConfigError),

    /// A broken invariant of this code (a response it cannot build): a 500
    /// whose detail is logged, never sent.
    #[error("internal error: {0}")]
    Bug(String),

    /// A real fault on our side (SQLite, a crashed worker). The detail is logged,
    /// never sent: it would mean nothing to a client and could leak internals.
    #[error("internal error: {0}")]
    Internal(#[from] StoreError),
}

/// The JSON error body.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// The stable, machine-readable code clients may branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidStage(_) => "invalid_stage",
            ApiError::InvalidTitle(_) => "invalid_title",
            ApiError::TodoNotFound { .. } | ApiError::RouteNotFound(_) => "not_found",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidContentType => "invalid_content_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::StageNotConfigured(_) => "stage_not_configured",
            ApiError::Bug(_) | ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidStage(_)
            | ApiError::TodoNotFound { .. }
            | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidTitle(_)
            | ApiError::MalformedJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidContentType
            | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::StageNotConfigured(_) | ApiError::Bug(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The sentence sent to the client. Capitalised and ending with a period.
    fn public_message(&self) -> String {
        let text = match self {
            ApiError::Bug(_) | ApiError::Internal(_) => {
                "the server failed to complete the request because of an internal fault; retry later, and check the server log if it persists".to_owned()
            }
            other => other.to_string(),
        };
        sentence(&text)
    }
}

/// Capitalises the first letter and ends with a period, so messages read as
/// sentences however they were assembled.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed with an internal error");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request rejected");
        }
        let body = ErrorBody {
            code: self.code(),
            message: self.public_message(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<PatchError> for ApiError {
    fn from(e: PatchError) -> Self {
        match e {
            PatchError::NothingToChange => ApiError::InvalidBody(
                "the update is empty; send at least one of \"title\" (string) or \"completed\" (boolean)"
                    .to_owned(),
            ),
            PatchError::Title(t) => ApiError::InvalidTitle(t),
        }
    }
}

/// A bad `limit` or `cursor` on `GET /todos`: the request, not the server, is wrong.
impl From<PageQueryError> for ApiError {
    fn from(e: PageQueryError) -> Self {
        ApiError::InvalidQuery(e.to_string())
    }
}

/// Maps axum's plain-text JSON rejections onto the contract's JSON errors.
///
/// axum answers type errors with 422 and a wrong content type with 415; the
/// contract asks for 400 for all bad input, so both are folded into 400.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::MalformedJson(source_text(&e.body_text()))
            }
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(format!(
                "the JSON body does not have the expected shape ({}); send only the documented fields with their documented types (title: string of at most {MAX_TITLE_CHARS} characters, completed: boolean)",
                source_text(&e.body_text())
            )),
            JsonRejection::MissingJsonContentType(_) => ApiError::InvalidContentType,
            JsonRejection::BytesRejection(e) => e.into(),
            // `JsonRejection` is non-exhaustive; any future variant is still bad input.
            other => ApiError::InvalidBody(format!(
                "the request body was refused ({}); send a JSON object with 'Content-Type: application/json'",
                other.body_text()
            )),
        }
    }
}

/// Reading the body failed: too large (413), or the connection broke (400).
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidBody(format!(
                "the request body could not be read ({}); resend the request",
                rejection.body_text()
            ))
        }
    }
}

/// A path segment that cannot even be decoded (e.g. percent-encoded invalid
/// UTF-8) cannot name a stage or a todo, so it is a 404 like any unknown path.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::RouteNotFound(format!("this path ({})", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidQuery(format!(
            "the query string could not be parsed ({}); send a URL-encoded query such as ?completed=true",
            rejection.body_text()
        ))
    }
}

/// axum prefixes serde's message with a generic sentence ("Failed to parse the
/// request body as JSON: ..."); keep only the specific part after the first ": ".
pub(crate) fn source_text(body_text: &str) -> String {
    body_text
        .split_once(": ")
        .map_or(body_text, |(_, rest)| rest)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sentences() {
        assert_eq!(sentence("abc"), "Abc.");
        assert_eq!(sentence("Abc."), "Abc.");
        assert_eq!(sentence(""), ".");
    }

    #[test]
    fn internal_errors_hide_details() {
        let e = ApiError::Internal(StoreError::WorkerFailed("secret detail".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code(), "internal");
        assert!(!e.public_message().contains("secret"));
    }

    #[test]
    fn title_errors_are_400_invalid_title() {
        let e = ApiError::from(TitleError::TooLong { chars: 501 });
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.code(), "invalid_title");
        assert!(e.public_message().contains("500"));
    }

    #[test]
    fn source_text_strips_axum_prefix() {
        assert_eq!(
            source_text(
                "Failed to parse the request body as JSON: EOF while parsing at line 1 column 0"
            ),
            "EOF while parsing at line 1 column 0"
        );
        assert_eq!(source_text("no prefix"), "no prefix");
    }
}
