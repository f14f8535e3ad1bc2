//! Token authentication: the only place a request gets its tenant.

use axum::http::{HeaderMap, header};

use super::ApiError;
use crate::tenant::{TenantId, Tokens};

/// Token → tenant, as of now (the registry changes it at runtime).
pub trait TokenLookup: Send + Sync {
    /// The tenant `token` belongs to.
    fn tenant(&self, token: &str) -> Option<TenantId>;
}

/// A fixed directory (tests, tools).
impl TokenLookup for Tokens {
    fn tenant(&self, token: &str) -> Option<TenantId> {
        Tokens::tenant(self, token).cloned()
    }
}

/// The tenant of a request: from `Authorization: Token T` (InfluxDB 2), `Bearer T`, or the
/// InfluxDB 1 query parameter `p` (the password carries the token; `u` is ignored).
///
/// # Errors
/// [`ApiError::Unauthorized`] when no known token is given.
pub fn authenticate(
    tokens: &dyn TokenLookup,
    headers: &HeaderMap,
    password: Option<&str>,
) -> Result<TenantId, ApiError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Token ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .map(str::trim);
    from_header
        .or(password)
        .and_then(|token| tokens.tenant(token))
        .ok_or(ApiError::Unauthorized)
}
