//! Tenants and their tokens. Every point carries its tenant from the moment its token is
//! checked; nothing downstream takes a tenant from anywhere else.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A tenant's name.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The tenant named `name`.
    pub fn new(name: &str) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Token → tenant. Tokens are secrets: never logged, never in error messages, never in
/// `Debug` output.
///
/// Only SHA-256 digests of tokens are kept, and a token is looked up by its digest: the
/// time a lookup takes depends on the digest, which tells nothing about which bytes of a
/// guessed token are right (a plain string compare stops at the first wrong byte).
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], TenantId>,
}

/// The SHA-256 digest of `token`.
pub fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("tokens", &self.by_digest.len())
            .finish_non_exhaustive()
    }
}

/// A secret from the configuration (a token): serialized as it is, shown as `***` by
/// `Debug`, so no log of a config can leak it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Tokens {
    /// Registers `token` for `tenant`.
    pub fn insert(&mut self, token: &str, tenant: TenantId) {
        self.by_digest.insert(digest(token), tenant);
    }

    /// Registers the token whose SHA-256 digest is `digest` for `tenant` (the registry
    /// keeps digests only).
    pub fn insert_digest(&mut self, digest: [u8; 32], tenant: TenantId) {
        self.by_digest.insert(digest, tenant);
    }

    /// The tenant `token` belongs to.
    pub fn tenant(&self, token: &str) -> Option<&TenantId> {
        self.by_digest.get(&digest(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_find_their_tenant_and_nothing_else() {
        let mut tokens = Tokens::default();
        tokens.insert("acme-token-1", TenantId::new("acme"));
        tokens.insert("globex-token-1", TenantId::new("globex"));
        assert_eq!(tokens.tenant("acme-token-1"), Some(&TenantId::new("acme")));
        assert_eq!(
            tokens.tenant("globex-token-1"),
            Some(&TenantId::new("globex"))
        );
        for wrong in ["acme-token-", "acme-token-1 ", "ACME-TOKEN-1", ""] {
            assert_eq!(tokens.tenant(wrong), None, "{wrong:?}");
        }
        assert!(!format!("{tokens:?}").contains("acme"));
    }
}
