//! The tenant registry: the control plane's record of each tenant (its API tokens, as
//! digests; its pipeline; its limits), kept by a [`TenantStore`], seeded from the config
//! file on first start and changed at runtime through the admin API.
//!
//! A change is made one at a time: applied to a copy of every tenant's spec, built whole
//! (a pipeline that doesn't build, or whose plugins refuse their parameters, is refused
//! naming the stage and field, and nothing changes), kept durably with its audit entry,
//! and only then swapped in: ingest and queries see it on their next request, each lane
//! on its next group of records.

mod build;
mod plugins;
mod records;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use build::{Builder, Tenancy, TenantView};
pub use plugins::{DeployTicket, Deployment, OwnedView, PluginsView};
pub use records::{Loaded, TenantStore};

use crate::config::{PipelineSpec, TenantConfig};
use crate::pipeline::PipelinesCell;
use crate::quota::{Limits, Quotas};
use crate::tenant::TenantId;

/// A tenant as the registry keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Its name.
    pub name: TenantId,
    /// How long its raw points are kept, in days.
    pub retention_days: u32,
    /// Its own quotas (each absent one from the service's `limits`).
    #[serde(default)]
    pub limits: Limits,
    /// Its pipeline.
    #[serde(default)]
    pub pipeline: PipelineSpec,
    /// Its API tokens, as digests.
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
    /// Its own plugins, by name: stages use them before the library's of the same name.
    #[serde(default)]
    pub plugins: BTreeMap<String, OwnedPlugin>,
}

/// A tenant's own plugin: every version deployed, and the one serving.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedPlugin {
    /// The serving version.
    pub active: String,
    /// Every version deployed, oldest first.
    pub versions: Vec<PluginVersion>,
}

/// A version of a tenant's own plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PluginVersion {
    /// The first 12 hex digits of the component's SHA-256.
    pub version: String,
    /// When it was deployed (RFC 3339).
    pub deployed: String,
    /// The component's size.
    pub bytes: u64,
    /// Its world: `filter`, `transform` or `alert`.
    pub world: String,
}

/// A tenant's API token as kept: its digest only. The token itself is shown once, when it
/// is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Names the token (in listings, the audit log, a revocation): the first 12 hex
    /// digits of its digest.
    pub id: String,
    /// The token's SHA-256, hex.
    pub digest: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// What it is for, as its creator said.
    #[serde(default)]
    pub description: String,
}

impl TokenRecord {
    /// The record of `token`, created now.
    fn of(token: &str, description: &str) -> Self {
        let digest = hex::encode(crate::tenant::digest(token));
        Self {
            id: digest[..12].to_owned(),
            digest,
            created: now(),
            description: description.to_owned(),
        }
    }
}

/// A token just created: shown to its creator once, never kept.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    /// Its record.
    #[serde(flatten)]
    pub record: TokenRecord,
    /// The token itself.
    pub token: String,
}

/// One change of the registry, as the audit log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Its place in the log, from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: the admin token's name, or `config` for the seed.
    pub by: String,
    /// What: `create-tenant`, `replace-pipeline`...
    pub action: String,
    /// The tenant changed, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What changed, in a line (never a token).
    pub detail: String,
}

/// A registry change that can't be made.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such tenant.
    #[error("tenant `{0}` does not exist")]
    NoTenant(String),
    /// The tenant exists already.
    #[error("tenant `{0}` exists already")]
    Exists(String),
    /// No such token.
    #[error("tenant `{tenant}` has no token `{id}`")]
    NoToken {
        /// The tenant.
        tenant: String,
        /// The token id asked for.
        id: String,
    },
    /// The change is wrong: what, and where.
    #[error("tenant `{tenant}`: {message}")]
    Invalid {
        /// The tenant.
        tenant: String,
        /// What is wrong, naming the stage or rule and the field.
        message: String,
    },
    /// The records can't be read or written; nothing changed.
    #[error("the tenant registry could not be read or written: {0} (retrying may help)")]
    Storage(String),
}

/// Now, in RFC 3339 (seconds).
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A fresh API token: 32 random bytes, hex, behind a prefix that says what it is.
fn fresh_token() -> Result<String, RegistryError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| RegistryError::Storage(format!("no randomness for a token: {e}")))?;
    Ok(format!("sluice_{}", hex::encode(bytes)))
}

/// Whether `name` is 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`:
/// what a tenant's or plugin's name may be (it appears in paths, keys, labels and logs).
fn well_named(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What [`well_named`] says, for a message.
const NAME_RULE: &str = "1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`";

/// Refuses a malformed tenant name.
fn check_name(name: &str) -> Result<(), RegistryError> {
    if well_named(name) {
        return Ok(());
    }
    Err(RegistryError::Invalid {
        tenant: name.to_owned(),
        message: format!("`name`: {NAME_RULE}"),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The specs, and the audit log's next number: held while a change is made.
struct State {
    specs: BTreeMap<TenantId, TenantSpec>,
    next_seq: u64,
}

/// The registry.
pub struct Registry {
    records: Arc<dyn TenantStore>,
    builder: Builder,
    state: Mutex<State>,
    current: RwLock<Arc<Tenancy>>,
    pipelines: Arc<PipelinesCell>,
    quotas: Arc<Quotas>,
    /// Every tenant's quotas where its own don't say.
    default_limits: Limits,
    /// Deployments of tenants' own plugins, by tenant, plugin and version.
    deployments: Mutex<BTreeMap<(TenantId, String, String), Deployment>>,
}

/// A change to make: the tenants it touches, and what the audit log says of it.
struct Change {
    action: &'static str,
    tenant: TenantId,
    detail: String,
}

impl Registry {
    /// The registry kept by `records`, seeded from `seed` (the config file's tenants) if it
    /// never was; what it builds goes to `pipelines` and `quotas`.
    ///
    /// # Errors
    /// When the records can't be read, or a kept tenant (or a seed) doesn't build.
    pub fn open(
        records: Arc<dyn TenantStore>,
        builder: Builder,
        pipelines: Arc<PipelinesCell>,
        quotas: Arc<Quotas>,
        default_limits: Limits,
        seed: &[TenantConfig],
    ) -> anyhow::Result<Self> {
        let loaded = records.load()?;
        let registry = Self {
            records,
            builder,
            state: Mutex::new(State {
                specs: BTreeMap::new(),
                next_seq: loaded.next_seq,
            }),
            current: RwLock::new(Arc::default()),
            pipelines,
            quotas,
            default_limits,
            deployments: Mutex::default(),
        };
        let specs: BTreeMap<TenantId, TenantSpec> = if loaded.seeded {
            if !seed.is_empty() {
                tracing::info!(
                    tenants = loaded.specs.len(),
                    "Tenants come from the registry; the config file's are only its first seed."
                );
            }
            loaded
                .specs
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect()
        } else {
            registry.seed(seed)?
        };
        for spec in specs.values() {
            for (name, owned) in &spec.plugins {
                let path = registry.builder.owned_file(&spec.name, name, &owned.active);
                match registry
                    .builder
                    .plugins
                    .compile_owned(&spec.name, name, &path)
                {
                    Ok(plugin) => registry.builder.plugins.activate_owned(&spec.name, plugin),
                    Err(error) => {
                        tracing::error!(tenant = %spec.name, plugin = %name, %error, "A tenant's plugin does not load.");
                    }
                }
            }
        }
        let tenancy = registry
            .builder
            .build(specs.values())
            .map_err(|(tenant, message)| RegistryError::Invalid {
                tenant: tenant.to_string(),
                message,
            })?;
        registry.install(&specs, tenancy);
        registry.lock().specs = specs;
        Ok(registry)
    }

    /// Keeps the config file's tenants as the first ones, with one audit entry.
    fn seed(&self, seed: &[TenantConfig]) -> anyhow::Result<BTreeMap<TenantId, TenantSpec>> {
        let mut specs = BTreeMap::new();
        for tenant in seed {
            let name = TenantId::new(&tenant.name);
            let pipeline = tenant
                .pipeline()
                .map_err(|e| anyhow::anyhow!("tenant `{}`: {e}", tenant.name))?;
            let tokens = tenant
                .tokens
                .iter()
                .map(|t| TokenRecord::of(t.expose(), "from the config file"))
                .collect();
            specs.insert(
                name.clone(),
                TenantSpec {
                    name,
                    retention_days: tenant.retention_days,
                    limits: tenant.limits,
                    pipeline,
                    tokens,
                    plugins: BTreeMap::new(),
                },
            );
        }
        let mut state = self.lock();
        let entry = AuditEntry {
            seq: state.next_seq,
            at: now(),
            by: "config".into(),
            action: "seed".into(),
            tenant: None,
            detail: format!("{} tenants from the config file", specs.len()),
        };
        let changed: Vec<(TenantId, Option<&TenantSpec>)> =
            specs.iter().map(|(k, v)| (k.clone(), Some(v))).collect();
        self.records.apply(&changed, &entry)?;
        state.next_seq += 1;
        Ok(specs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// What is built from the specs now.
    pub fn current(&self) -> Arc<Tenancy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps `tenancy` in: the lanes' pipelines first, so a tenant's token works only once
    /// its pipeline is there.
    fn install(&self, specs: &BTreeMap<TenantId, TenantSpec>, tenancy: Tenancy) {
        for spec in specs.values() {
            self.quotas
                .set(&spec.name, spec.limits.or(self.default_limits));
        }
        for gone in self.current().tenants.keys() {
            if !specs.contains_key(gone) {
                self.quotas.remove(gone);
            }
        }
        self.pipelines.replace(tenancy.pipelines.clone());
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tenancy);
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> Vec<TenantSpec> {
        self.lock().specs.values().cloned().collect()
    }

    /// The tenant `name`.
    ///
    /// # Errors
    /// When there is none.
    pub fn tenant(&self, name: &str) -> Result<TenantSpec, RegistryError> {
        self.lock()
            .specs
            .get(&TenantId::new(name))
            .cloned()
            .ok_or_else(|| RegistryError::NoTenant(name.to_owned()))
    }

    /// Makes `change` by `by`: `edit` on a copy of the specs, built whole (and the changed
    /// tenant's plugins probed with their parameters when `probe`), kept with its audit
    /// entry, then swapped in.
    fn change(
        &self,
        by: &str,
        change: Change,
        probe: bool,
        edit: impl FnOnce(&mut BTreeMap<TenantId, TenantSpec>) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        self.change_then(by, change, probe, edit, None)
    }

    /// [`Registry::change`], running `activate` once the change is kept (a plugin version
    /// swapped in): what is built then sees it.
    fn change_then(
        &self,
        by: &str,
        change: Change,
        probe: bool,
        edit: impl FnOnce(&mut BTreeMap<TenantId, TenantSpec>) -> Result<(), RegistryError>,
        activate: Option<Box<dyn FnOnce() + '_>>,
    ) -> Result<(), RegistryError> {
        let mut state = self.lock();
        let mut specs = state.specs.clone();
        edit(&mut specs)?;
        let invalid = |message: String| RegistryError::Invalid {
            tenant: change.tenant.to_string(),
            message,
        };
        let tenancy = self
            .builder
            .build(specs.values())
            .map_err(|(_, message)| invalid(message))?;
        if probe && let Some(pipeline) = tenancy.pipelines.get(&change.tenant) {
            build::probe(pipeline).map_err(invalid)?;
        }
        let entry = AuditEntry {
            seq: state.next_seq,
            at: now(),
            by: by.to_owned(),
            action: change.action.to_owned(),
            tenant: Some(change.tenant.to_string()),
            detail: change.detail,
        };
        self.records.apply(
            &[(change.tenant.clone(), specs.get(&change.tenant))],
            &entry,
        )?;
        tracing::info!(by, action = change.action, tenant = %change.tenant, "Tenant registry changed.");
        state.next_seq += 1;
        let tenancy = match activate {
            Some(activate) => {
                activate();
                // What built before builds still; its stages now resolve to the new version.
                self.builder
                    .build(specs.values())
                    .map_err(|(_, message)| invalid(message))?
            }
            None => tenancy,
        };
        self.install(&specs, tenancy);
        state.specs = specs;
        Ok(())
    }

    /// Creates tenant `name` with `pipeline` and a first token (shown once).
    ///
    /// # Errors
    /// A name taken or malformed, a pipeline that doesn't build, storage.
    pub fn create(
        &self,
        by: &str,
        name: &str,
        retention_days: u32,
        limits: Limits,
        pipeline: PipelineSpec,
    ) -> Result<(TenantSpec, NewToken), RegistryError> {
        check_name(name)?;
        let token = fresh_token()?;
        let record = TokenRecord::of(&token, "created with the tenant");
        let tenant = TenantId::new(name);
        let spec = TenantSpec {
            name: tenant.clone(),
            retention_days,
            limits,
            pipeline,
            tokens: vec![record.clone()],
            plugins: BTreeMap::new(),
        };
        let change = Change {
            action: "create-tenant",
            tenant: tenant.clone(),
            detail: format!("retention {retention_days} days, token {}", record.id),
        };
        self.change(by, change, true, |specs| {
            if specs.contains_key(&tenant) {
                return Err(RegistryError::Exists(name.to_owned()));
            }
            specs.insert(tenant.clone(), spec.clone());
            Ok(())
        })?;
        Ok((spec, NewToken { record, token }))
    }

    /// Changes tenant `name`'s retention and limits (each when given).
    ///
    /// # Errors
    /// No such tenant, a retention shorter than a tier's, storage.
    pub fn update(
        &self,
        by: &str,
        name: &str,
        retention_days: Option<u32>,
        limits: Option<Limits>,
    ) -> Result<TenantSpec, RegistryError> {
        let tenant = TenantId::new(name);
        let mut detail = Vec::new();
        if let Some(days) = retention_days {
            detail.push(format!("retention {days} days"));
        }
        if let Some(limits) = &limits {
            detail.push(format!(
                "limits {}",
                serde_json::to_string(limits).unwrap_or_default()
            ));
        }
        let change = Change {
            action: "update-tenant",
            tenant: tenant.clone(),
            detail: detail.join(", "),
        };
        self.change(by, change, false, |specs| {
            let spec = specs
                .get_mut(&tenant)
                .ok_or_else(|| RegistryError::NoTenant(name.to_owned()))?;
            if let Some(days) = retention_days {
                spec.retention_days = days;
            }
            if let Some(limits) = limits {
                spec.limits = limits;
            }
            Ok(())
        })?;
        self.tenant(name)
    }

    /// Deletes tenant `name`: its tokens stop working at once. Its stored data stays
    /// until its retention passes (a tenant created again with the name sees it).
    ///
    /// # Errors
    /// No such tenant, storage.
    pub fn delete(&self, by: &str, name: &str) -> Result<(), RegistryError> {
        let tenant = TenantId::new(name);
        let change = Change {
            action: "delete-tenant",
            tenant: tenant.clone(),
            detail: String::new(),
        };
        self.change(by, change, false, |specs| {
            specs
                .remove(&tenant)
                .map(drop)
                .ok_or_else(|| RegistryError::NoTenant(name.to_owned()))
        })?;
        self.builder.plugins.forget_owned(&tenant);
        let dir = self.builder.owned_dir(&tenant);
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%tenant, %error, dir = %dir.display(), "Could not remove a deleted tenant's plugins.");
        }
        Ok(())
    }

    /// Creates a token of tenant `name` (shown once).
    ///
    /// # Errors
    /// No such tenant, storage.
    pub fn create_token(
        &self,
        by: &str,
        name: &str,
        description: &str,
    ) -> Result<NewToken, RegistryError> {
        let tenant = TenantId::new(name);
        let token = fresh_token()?;
        let record = TokenRecord::of(&token, description);
        let change = Change {
            action: "create-token",
            tenant: tenant.clone(),
            detail: format!("token {}", record.id),
        };
        self.change(by, change, false, |specs| {
            let spec = specs
                .get_mut(&tenant)
                .ok_or_else(|| RegistryError::NoTenant(name.to_owned()))?;
            spec.tokens.push(record.clone());
            Ok(())
        })?;
        Ok(NewToken { record, token })
    }

    /// Revokes tenant `name`'s token `id`: it stops working at once.
    ///
    /// # Errors
    /// No such tenant or token, storage.
    pub fn revoke_token(&self, by: &str, name: &str, id: &str) -> Result<(), RegistryError> {
        let tenant = TenantId::new(name);
        let change = Change {
            action: "revoke-token",
            tenant: tenant.clone(),
            detail: format!("token {id}"),
        };
        self.change(by, change, false, |specs| {
            let spec = specs
                .get_mut(&tenant)
                .ok_or_else(|| RegistryError::NoTenant(name.to_owned()))?;
            let before = spec.tokens.len();
            spec.tokens.retain(|t| t.id != id);
            if spec.tokens.len() == before {
                return Err(RegistryError::NoToken {
                    tenant: name.to_owned(),
                    id: id.to_owned(),
                });
            }
            Ok(())
        })
    }

    /// Replaces tenant `name`'s pipeline with `pipeline`, checked whole: every stage and
    /// rule builds, and every plugin takes its parameters.
    ///
    /// # Errors
    /// No such tenant, a pipeline that doesn't build (naming the stage and field), storage.
    pub fn replace_pipeline(
        &self,
        by: &str,
        name: &str,
        pipeline: PipelineSpec,
    ) -> Result<TenantSpec, RegistryError> {
        let tenant = TenantId::new(name);
        let change = Change {
            action: "replace-pipeline",
            tenant: tenant.clone(),
            detail: format!(
                "{} stages, {} alerts, {} rollups, {} lookups",
                pipeline.stages.len(),
                pipeline.alerts.len(),
                pipeline.rollups.len(),
                pipeline.lookups.len()
            ),
        };
        self.change(by, change, true, |specs| {
            let spec = specs
                .get_mut(&tenant)
                .ok_or_else(|| RegistryError::NoTenant(name.to_owned()))?;
            spec.pipeline = pipeline;
            Ok(())
        })?;
        self.tenant(name)
    }

    /// Up to `limit` audit entries after `after`, oldest first.
    ///
    /// # Errors
    /// When the log can't be read.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        self.records.audit(after, limit)
    }
}

impl crate::api::TokenLookup for Registry {
    fn tenant(&self, token: &str) -> Option<TenantId> {
        self.current().tokens.tenant(token).cloned()
    }
}

impl crate::ingest::Tenants for Registry {
    fn retention(&self, tenant: &TenantId) -> Option<Duration> {
        self.current().tenants.get(tenant).map(|t| t.retention)
    }

    fn retyping(&self, tenant: &TenantId) -> bool {
        self.current()
            .tenants
            .get(tenant)
            .is_some_and(|t| t.retyping)
    }
}

impl crate::query::Tenants for Registry {
    fn tiers(&self, tenant: &TenantId) -> Vec<crate::query::TierInfo> {
        self.current()
            .tenants
            .get(tenant)
            .map(|t| t.tiers.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StageConfig;
    use crate::pipeline::DeadLetterLog;
    use crate::plugin::{PluginLimits, PluginRegistry, RegistryConfig, Runtime, RuntimeConfig};
    use crate::store::EmbeddedStore;
    use crate::telemetry::Metrics;

    /// A registry in `dir` with no plugins, seeded with tenant `acme` (token
    /// `acme-token-1`) on first open.
    fn open(dir: &std::path::Path, runtime: &tokio::runtime::Runtime) -> Registry {
        let metrics = Arc::new(Metrics::default());
        let plugins = PluginRegistry::open(
            Runtime::new(&RuntimeConfig::default()).expect("runtime"),
            RegistryConfig {
                dir: dir.join("plugins"),
                default_limits: PluginLimits::default(),
                limits: BTreeMap::new(),
                quarantine_after: 5,
            },
            metrics.clone(),
        )
        .expect("plugins");
        let builder = Builder {
            plugins,
            dead_letters: Arc::new(
                DeadLetterLog::open(&dir.join("dead.jsonl"), metrics).expect("dead letters"),
            ),
            lookups: crate::lookup::LookupTables::default(),
            disorder: 0,
            max_future: i64::MAX,
            runtime: runtime.handle().clone(),
            owned_plugins: dir.join("tenant-plugins"),
        };
        let seed: Vec<TenantConfig> = toml::from_str::<crate::config::Config>(
            "[[tenants]]\nname = \"acme\"\ntokens = [\"acme-token-1\"]\n",
        )
        .expect("seed")
        .tenants;
        let store = Arc::new(EmbeddedStore::open(&dir.join("store")).expect("store"));
        Registry::open(
            store,
            builder,
            Arc::default(),
            Arc::default(),
            Limits::default(),
            &seed,
        )
        .expect("registry")
    }

    fn who(registry: &Registry, token: &str) -> Option<TenantId> {
        crate::api::TokenLookup::tenant(registry, token)
    }

    #[test]
    fn changes_apply_at_once_are_kept_audited_and_refused_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
        let runtime = tokio::runtime::Runtime::new().expect("tokio");
        let registry = open(dir.path(), &runtime);
        assert_eq!(who(&registry, "acme-token-1"), Some(TenantId::new("acme")));

        let (spec, token) = registry
            .create(
                "ops",
                "globex",
                7,
                Limits::default(),
                PipelineSpec::default(),
            )
            .expect("create");
        assert_eq!(spec.tokens.len(), 1);
        assert!(token.token.starts_with("sluice_") && token.token.len() > 60);
        assert_eq!(who(&registry, &token.token), Some(TenantId::new("globex")));
        assert!(
            !serde_json::to_string(&spec)
                .expect("json")
                .contains(&token.token),
            "only the digest is kept"
        );
        assert!(matches!(
            registry.create(
                "ops",
                "globex",
                7,
                Limits::default(),
                PipelineSpec::default()
            ),
            Err(RegistryError::Exists(_))
        ));
        assert!(matches!(
            registry.create(
                "ops",
                "bad/name",
                7,
                Limits::default(),
                PipelineSpec::default()
            ),
            Err(RegistryError::Invalid { .. })
        ));

        // A pipeline naming a plugin there isn't is refused whole, naming stage and field.
        let broken = PipelineSpec {
            stages: vec![StageConfig {
                name: "gate".into(),
                plugin: "nowhere".into(),
                params: BTreeMap::new(),
            }],
            ..PipelineSpec::default()
        };
        let err = registry
            .replace_pipeline("ops", "globex", broken)
            .expect_err("unknown plugin");
        assert!(
            err.to_string()
                .starts_with("tenant `globex`: stage `gate`: `plugin`: no plugin `nowhere` in"),
            "{err}"
        );
        assert!(
            registry
                .tenant("globex")
                .expect("globex")
                .pipeline
                .stages
                .is_empty()
        );

        let second = registry
            .create_token("ops", "globex", "ci")
            .expect("second token");
        registry
            .revoke_token("ops", "globex", &token.record.id)
            .expect("revoke");
        assert_eq!(who(&registry, &token.token), None, "revoked at once");
        assert_eq!(who(&registry, &second.token), Some(TenantId::new("globex")));
        registry.delete("ops", "acme").expect("delete");
        assert_eq!(who(&registry, "acme-token-1"), None, "deleted at once");

        let audit = registry.audit(0, 100).expect("audit");
        let actions: Vec<(&str, &str)> = audit
            .iter()
            .map(|e| (e.by.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("config", "seed"),
                ("ops", "create-tenant"),
                ("ops", "create-token"),
                ("ops", "revoke-token"),
                ("ops", "delete-tenant")
            ],
            "refused changes leave no entry"
        );
        assert_eq!(registry.audit(3, 1).expect("page")[0].seq, 4);
        drop(registry);

        // Reopened: the registry is what it was, not the seed again.
        let registry = open(dir.path(), &runtime);
        assert_eq!(who(&registry, "acme-token-1"), None);
        assert_eq!(who(&registry, &second.token), Some(TenantId::new("globex")));
        assert_eq!(registry.audit(0, 100).expect("audit").len(), 5);
        registry
            .update("ops", "globex", Some(30), None)
            .expect("update");
        assert_eq!(registry.audit(5, 10).expect("audit")[0].seq, 6);
    }
}
