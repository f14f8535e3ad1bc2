//! Pieces every HTTP handler shares: the error type and token authentication.

mod auth;
mod error;

pub use auth::authenticate;
pub use error::ApiError;
