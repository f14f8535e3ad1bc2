//! Tenants' own plugins: deployments (kept by content, compiled in the background, made
//! serving by a registry change), rollbacks, and what a tenant sees of its plugins.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{
    Change, NAME_RULE, OwnedPlugin, PluginVersion, Registry, RegistryError, lock, now, well_named,
};
use crate::tenant::TenantId;

/// Where a deployment of a tenant's plugin stands.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Deployment {
    /// Being compiled, in the background; the serving version serves meanwhile.
    Compiling,
    /// Serving (or served: a later version or a rollback replaced it).
    Deployed,
    /// Refused: it doesn't compile, link, or implement the serving version's world.
    Failed {
        /// Why.
        error: String,
    },
}

/// A deployment as asked for: the version, and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct DeployTicket {
    /// The plugin.
    pub plugin: String,
    /// Its version (content hash).
    pub version: String,
    /// Where the deployment stands.
    #[serde(flatten)]
    pub state: Deployment,
}

/// A tenant's plugins as it sees them: its own (versions, serving one, deployments under
/// way or failed), and the library's names.
#[derive(Debug, Clone, Serialize)]
pub struct PluginsView {
    /// Its own plugins.
    pub own: BTreeMap<String, OwnedView>,
    /// The library every tenant may use.
    pub library: Vec<String>,
}

/// One of a tenant's own plugins.
#[derive(Debug, Clone, Serialize)]
pub struct OwnedView {
    /// The serving version, once one is.
    pub active: Option<String>,
    /// Versions deployed, oldest first.
    pub versions: Vec<PluginVersion>,
    /// Deployments not deployed (compiling, or failed), by version.
    pub pending: BTreeMap<String, Deployment>,
}

impl Registry {
    /// Starts deploying `bytes` as `tenant`'s own plugin `name`: kept by content (its
    /// version), compiled in the background, and made serving (between two batches) once
    /// it compiles, links and implements the world the serving version does. Until then,
    /// and if it fails, the serving version serves. Deploying the serving version again
    /// changes nothing.
    ///
    /// # Errors
    /// No such tenant, a malformed name, storage.
    pub fn deploy_plugin(
        self: &Arc<Self>,
        by: &str,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<DeployTicket, RegistryError> {
        let spec = self.tenant(tenant)?;
        check_plugin_name(tenant, name)?;
        let digest = crate::plugin::digest_of(bytes);
        let version = crate::plugin::version_of(&digest).to_owned();
        let ticket = |state| DeployTicket {
            plugin: name.to_owned(),
            version: version.clone(),
            state,
        };
        if spec.plugins.get(name).is_some_and(|p| p.active == version) {
            return Ok(ticket(Deployment::Deployed));
        }
        let key = (spec.name.clone(), name.to_owned(), version.clone());
        {
            let mut deployments = lock(&self.deployments);
            if deployments.get(&key) == Some(&Deployment::Compiling) {
                return Ok(ticket(Deployment::Compiling));
            }
            let path = self.builder.owned_file(&spec.name, name, &version);
            write_atomically(&path, bytes).map_err(|e| {
                RegistryError::Storage(format!("keeping plugin `{name}`@{version}: {e}"))
            })?;
            deployments.insert(key.clone(), Deployment::Compiling);
        }
        let registry = self.clone();
        let (by, plugin, size) = (by.to_owned(), name.to_owned(), bytes.len() as u64);
        self.builder.runtime.spawn_blocking(move || {
            let (tenant, _, version) = &key;
            let state = match registry.activate(&by, tenant, &plugin, version, Some(size)) {
                Ok(()) => Deployment::Deployed,
                Err(error) => {
                    tracing::warn!(%tenant, %plugin, %version, %error, "A tenant's plugin was not deployed.");
                    Deployment::Failed {
                        error: error.to_string(),
                    }
                }
            };
            lock(&registry.deployments).insert(key, state);
        });
        Ok(ticket(Deployment::Compiling))
    }

    /// Makes an earlier version of `tenant`'s own plugin `name` the serving one again.
    ///
    /// # Errors
    /// No such tenant, plugin or version; a version that no longer loads; storage.
    pub fn rollback_plugin(
        &self,
        by: &str,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<(), RegistryError> {
        let spec = self.tenant(tenant)?;
        let known = spec
            .plugins
            .get(name)
            .is_some_and(|p| p.versions.iter().any(|v| v.version == version));
        if !known {
            return Err(RegistryError::Invalid {
                tenant: tenant.to_owned(),
                message: format!("plugin `{name}`: `version`: no version `{version}` was deployed"),
            });
        }
        self.activate(by, &spec.name, name, version, None)
    }

    /// Compiles `tenant`'s kept `name`@`version` and makes it serving, recording it (as a
    /// deployment of `size` bytes, or a rollback).
    fn activate(
        &self,
        by: &str,
        tenant: &TenantId,
        name: &str,
        version: &str,
        size: Option<u64>,
    ) -> Result<(), RegistryError> {
        let path = self.builder.owned_file(tenant, name, version);
        let plugin = self
            .builder
            .plugins
            .compile_owned(tenant, name, &path)
            .map_err(|e| RegistryError::Invalid {
                tenant: tenant.to_string(),
                message: format!("plugin `{name}`: {e}"),
            })?;
        let record = PluginVersion {
            version: version.to_owned(),
            deployed: now(),
            bytes: size.unwrap_or_default(),
            world: plugin.world().name().to_owned(),
        };
        let change = Change {
            action: if size.is_some() {
                "deploy-plugin"
            } else {
                "rollback-plugin"
            },
            tenant: tenant.clone(),
            detail: format!("{name}@{version}"),
        };
        let plugins = self.builder.plugins.clone();
        let owner = tenant.clone();
        self.change_then(
            by,
            change,
            false,
            |specs| {
                let spec = specs
                    .get_mut(tenant)
                    .ok_or_else(|| RegistryError::NoTenant(tenant.to_string()))?;
                let owned = spec
                    .plugins
                    .entry(name.to_owned())
                    .or_insert_with(|| OwnedPlugin {
                        active: version.to_owned(),
                        versions: Vec::new(),
                    });
                owned.active = version.to_owned();
                if !owned.versions.iter().any(|v| v.version == version) {
                    owned.versions.push(record);
                }
                Ok(())
            },
            Some(Box::new(move || plugins.activate_owned(&owner, plugin))),
        )
    }

    /// `tenant`'s plugins: its own, with their versions and deployments, and the
    /// library's names.
    ///
    /// # Errors
    /// No such tenant.
    pub fn plugins(&self, tenant: &str) -> Result<PluginsView, RegistryError> {
        let spec = self.tenant(tenant)?;
        let mut own: BTreeMap<String, OwnedView> = spec
            .plugins
            .into_iter()
            .map(|(name, p)| {
                let view = OwnedView {
                    active: Some(p.active),
                    versions: p.versions,
                    pending: BTreeMap::new(),
                };
                (name, view)
            })
            .collect();
        for ((t, name, version), state) in lock(&self.deployments).iter() {
            if *t != spec.name || *state == Deployment::Deployed {
                continue;
            }
            own.entry(name.clone())
                .or_insert_with(|| OwnedView {
                    active: None,
                    versions: Vec::new(),
                    pending: BTreeMap::new(),
                })
                .pending
                .insert(version.clone(), state.clone());
        }
        let library = self
            .builder
            .plugins
            .statuses()
            .into_iter()
            .filter(|s| s.version.is_some())
            .map(|s| s.name)
            .collect();
        Ok(PluginsView { own, library })
    }

    /// Where deployment `version` of `tenant`'s plugin `name` stands: as this process
    /// saw it, else deployed when the tenant's record has the version (it was deployed
    /// before a restart); none when it was never deployed.
    pub fn deployment(&self, tenant: &str, name: &str, version: &str) -> Option<Deployment> {
        let key = (TenantId::new(tenant), name.to_owned(), version.to_owned());
        if let Some(state) = lock(&self.deployments).get(&key) {
            return Some(state.clone());
        }
        let kept = self.tenant(tenant).ok().is_some_and(|spec| {
            spec.plugins
                .get(name)
                .is_some_and(|p| p.versions.iter().any(|v| v.version == version))
        });
        kept.then_some(Deployment::Deployed)
    }
}

/// Refuses a malformed plugin name: it is a file name, and appears in paths.
fn check_plugin_name(tenant: &str, name: &str) -> Result<(), RegistryError> {
    if well_named(name) {
        return Ok(());
    }
    Err(RegistryError::Invalid {
        tenant: tenant.to_owned(),
        message: format!("plugin {name:?}: `name`: {NAME_RULE}"),
    })
}

/// Writes `bytes` to `path` whole or not at all (a temporary file, synced, renamed).
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("wasm.part");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
