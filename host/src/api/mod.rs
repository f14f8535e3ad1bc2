//! Pieces every HTTP handler shares: the error type, token authentication and the request
//! span (with secrets redacted).

mod auth;
mod error;
mod trace;

pub use auth::{TokenLookup, authenticate};
pub use error::ApiError;
pub use trace::{redacted_uri, request_span};
