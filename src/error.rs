//! `AppError`: the one error every handler returns. It carries a kind (mapped to an HTTP status
//! and a stable JSON `code`) and a message for the caller, and renders as
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! Modules keep their own `thiserror` enums (`EngineError`, `StoreError`, ...); the `From`
//! impls here decide, in one place, what each becomes for the caller. Internal causes are
//! logged, never shown.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde_json::json;

use crate::engine::EngineError;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub kind: ErrorKind,
    /// Stable machine-readable code, e.g. `unknown_level`.
    pub code: &'static str,
    pub message: String,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    /// A failure inside Pigeon: logged with its cause, shown to the caller without it.
    #[track_caller]
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(%cause, location = %at, "internal error");
        Self::new(ErrorKind::Internal, "internal", "internal error")
    }
    #[track_caller]
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(%cause, location = %at, "dependency unavailable");
        Self::new(
            ErrorKind::Unavailable,
            "unavailable",
            "a dependency is unavailable, try again",
        )
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if self.kind == ErrorKind::Unauthorized {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

impl From<StoreError> for AppError {
    #[track_caller]
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::not_found(what),
            StoreError::Duplicate(what) => {
                AppError::conflict("duplicate", format!("{what} already exists"))
            }
            StoreError::InUse(what) => AppError::conflict("in_use", what),
            StoreError::Pool(e) => AppError::unavailable(e),
            other => AppError::internal(other),
        }
    }
}

impl From<EngineError> for AppError {
    #[track_caller]
    fn from(e: EngineError) -> Self {
        AppError::unavailable(e)
    }
}

/// Turns actix's JSON extractor failures into our JSON errors (413, 415 or 400 naming the field).
pub fn json_error(err: actix_web::error::JsonPayloadError) -> AppError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { length, limit } => AppError::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!("body of {length} bytes is larger than the limit of {limit} bytes"),
        ),
        E::Overflow { limit } => AppError::new(
            ErrorKind::PayloadTooLarge,
            "payload_too_large",
            format!("body is larger than the limit of {limit} bytes"),
        ),
        E::ContentType => AppError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        E::Deserialize(e) if e.is_data() => AppError::bad_request("invalid_body", e.to_string()),
        E::Deserialize(e) => AppError::bad_request("malformed_json", e.to_string()),
        other => AppError::bad_request("invalid_body", other.to_string()),
    }
}
