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
#[derive(Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, TenantId>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("tokens", &self.by_token.len())
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
        self.by_token.insert(token.to_owned(), tenant);
    }

    /// The tenant `token` belongs to.
    pub fn tenant(&self, token: &str) -> Option<&TenantId> {
        self.by_token.get(token)
    }
}
