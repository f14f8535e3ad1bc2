//! Where the registry keeps its tenants and audit log: a small seam, so the scale-out
//! deployment can keep them in ScyllaDB later. The embedded store keeps them beside its
//! data, durably, each change with its audit entry in one atomic write.

use super::{AuditEntry, RegistryError, TenantSpec};
use crate::store::EmbeddedStore;
use crate::tenant::TenantId;

/// Where tenants and the audit log are kept.
pub trait TenantStore: Send + Sync {
    /// Every tenant kept, whether the registry was ever seeded, and the audit log's next
    /// sequence number.
    ///
    /// # Errors
    /// When the records can't be read or decoded.
    fn load(&self) -> Result<Loaded, RegistryError>;

    /// Keeps `specs` (each tenant's new spec, or none: deleted) and `entry`, durably and at
    /// once; marks the registry seeded.
    ///
    /// # Errors
    /// When they can't be kept: then nothing was.
    fn apply(
        &self,
        specs: &[(TenantId, Option<&TenantSpec>)],
        entry: &AuditEntry,
    ) -> Result<(), RegistryError>;

    /// Up to `limit` audit entries after sequence number `after`, oldest first.
    ///
    /// # Errors
    /// When the log can't be read.
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, RegistryError>;
}

/// What a [`TenantStore`] holds.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every tenant.
    pub specs: Vec<TenantSpec>,
    /// Whether the registry was ever seeded (from the config file, or by a change).
    pub seeded: bool,
    /// The next audit entry's sequence number.
    pub next_seq: u64,
}

const TENANT_PREFIX: &[u8] = b"registry/tenant/";
const AUDIT_PREFIX: &[u8] = b"registry/audit/";
const SEEDED: &[u8] = b"registry/seeded";

/// The version of a kept tenant's JSON.
const SPEC_VERSION: u32 = 1;

/// A tenant as kept: its spec with the version of its format.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept<T> {
    v: u32,
    #[serde(flatten)]
    record: T,
}

fn storage(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(e.to_string())
}

fn tenant_key(tenant: &TenantId) -> Vec<u8> {
    [TENANT_PREFIX, tenant.as_str().as_bytes()].concat()
}

fn audit_key(seq: u64) -> Vec<u8> {
    [AUDIT_PREFIX, &seq.to_be_bytes()[..]].concat()
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, RegistryError> {
    let kept: Kept<T> = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Storage(format!("{what} does not decode: {e}")))?;
    if kept.v != SPEC_VERSION {
        return Err(RegistryError::Storage(format!(
            "{what} is in format version {}, unknown to this release (it reads {SPEC_VERSION}): written by a newer Sluice?",
            kept.v
        )));
    }
    Ok(kept.record)
}

fn encode<T: serde::Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(&Kept {
        v: SPEC_VERSION,
        record,
    })
    .unwrap_or_default()
}

impl TenantStore for EmbeddedStore {
    fn load(&self) -> Result<Loaded, RegistryError> {
        let specs = self
            .records(TENANT_PREFIX)
            .map_err(storage)?
            .into_iter()
            .map(|(key, value)| {
                let what = format!("tenant record {}", String::from_utf8_lossy(&key));
                decode::<TenantSpec>(&what, &value)
            })
            .collect::<Result<_, _>>()?;
        let seeded = !self.records(SEEDED).map_err(storage)?.is_empty();
        let next_seq = match self.last_record(AUDIT_PREFIX).map_err(storage)? {
            Some((_, value)) => decode::<AuditEntry>("the last audit entry", &value)?.seq + 1,
            None => 1,
        };
        Ok(Loaded {
            specs,
            seeded,
            next_seq,
        })
    }

    fn apply(
        &self,
        specs: &[(TenantId, Option<&TenantSpec>)],
        entry: &AuditEntry,
    ) -> Result<(), RegistryError> {
        let mut puts = vec![
            (audit_key(entry.seq), encode(entry)),
            (SEEDED.to_vec(), Vec::new()),
        ];
        let mut removes = Vec::new();
        for (tenant, spec) in specs {
            match spec {
                Some(spec) => puts.push((tenant_key(tenant), encode(spec))),
                None => removes.push(tenant_key(tenant)),
            }
        }
        self.write_records(&puts, &removes).map_err(storage)
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        self.records_after(AUDIT_PREFIX, &audit_key(after), limit)
            .map_err(storage)?
            .into_iter()
            .map(|(_, value)| decode::<AuditEntry>("an audit entry", &value))
            .collect()
    }
}
