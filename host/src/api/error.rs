//! One error type for every HTTP handler, rendered as InfluxDB renders errors:
//! `{"code": "...", "message": "..."}`, plus `line` when a line of input is to blame.
//! Internal failures say only that something failed here; their detail goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::quota::OverQuota;

/// An HTTP error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one no tenant has.
    #[error("unauthorized: send `Authorization: Token <token>`")]
    Unauthorized,
    /// Bad input; `line` is the first bad line, when there is one.
    #[error("{message}")]
    Invalid {
        /// What is wrong, and where.
        message: String,
        /// 1-based line of the body.
        line: Option<usize>,
    },
    /// The body is over the limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The pipeline is behind: try again shortly.
    #[error("pipeline is {lag} records behind; retry later")]
    Backpressure {
        /// Records not yet processed.
        lag: u64,
    },
    /// Over one of the tenant's quotas.
    #[error(transparent)]
    OverQuota(#[from] OverQuota),
    /// A dependency (transport, store) failed; the detail is logged, not sent.
    #[error("{what} unavailable")]
    Unavailable {
        /// Which part.
        what: &'static str,
        /// The detail, for the log.
        detail: String,
    },
}

impl ApiError {
    /// An invalid-input error without a line.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Invalid {
            message: message.into(),
            line: None,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, line) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Invalid { line, .. } => (StatusCode::BAD_REQUEST, "invalid", *line),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request too large", None),
            ApiError::Backpressure { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            // More series is bad input until the quota is raised: a client shouldn't retry.
            ApiError::OverQuota(OverQuota::Series { .. }) => {
                (StatusCode::BAD_REQUEST, "over quota", None)
            }
            ApiError::OverQuota(_) => (StatusCode::TOO_MANY_REQUESTS, "over quota", None),
            ApiError::Unavailable { what, detail } => {
                tracing::error!(what, detail, "Request failed on an internal dependency.");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
            }
        };
        let mut response = (
            status,
            Json(Body {
                code,
                message: self.to_string(),
                line,
            }),
        )
            .into_response();
        let retry_after = match &self {
            ApiError::OverQuota(over) => over.retry_after().map(|d| d.as_secs()),
            _ => (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_answers_carry_retry_after_and_hide_internal_detail() {
        let r = ApiError::Backpressure { lag: 9 }.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let r = ApiError::Unavailable {
            what: "store",
            detail: "disk /secret/path full".into(),
        };
        assert!(!r.to_string().contains("secret"));
        assert_eq!(r.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ApiError::Unauthorized.into_response().status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
