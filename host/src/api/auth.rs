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

/// The tenant of a request: from `Authorization: Token T` (InfluxDB 2), `Bearer T`, `Basic`
/// credentials whose password is the token (Grafana's basic auth, URL credentials; the user
/// is ignored), or the InfluxDB 1 query parameter `p` (the password carries the token; `u`
/// is ignored).
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
            let token = v
                .strip_prefix("Token ")
                .or_else(|| v.strip_prefix("Bearer "));
            match token {
                Some(token) => Some(token.trim().to_owned()),
                None => basic_password(v.strip_prefix("Basic ")?),
            }
        });
    from_header
        .as_deref()
        .or(password)
        .and_then(|token| tokens.tenant(token))
        .ok_or(ApiError::Unauthorized)
}

/// The password of Basic credentials (`base64(user:password)`).
fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    decoded.split_once(':').map(|(_, p)| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_as_token_bearer_or_basic_password() {
        let mut tokens = Tokens::default();
        tokens.insert("t0k3n", TenantId::new("acme"));
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().expect("header"));
            authenticate(&tokens, &h, None).ok()
        };
        let acme = Some(TenantId::new("acme"));
        assert_eq!(with("Token t0k3n"), acme);
        assert_eq!(with("Bearer t0k3n"), acme);
        // "grafana:t0k3n"
        assert_eq!(with("Basic Z3JhZmFuYTp0MGszbg=="), acme);
        // "t0k3n:" (the token as user) is no token.
        assert_eq!(with("Basic dDBrM246"), None);
        assert_eq!(with("Basic !!!"), None);
        assert_eq!(
            authenticate(&tokens, &HeaderMap::new(), Some("t0k3n")).ok(),
            acme
        );
    }
}
