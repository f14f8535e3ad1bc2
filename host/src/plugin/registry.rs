//! The plugins of a plugin directory, each behind a [`PluginSlot`] that always holds exactly
//! one serving version.
//!
//! A batch takes the serving version once, at its start, and runs to the end on it: a swap
//! (by [`PluginRegistry::reload`], driven by the watcher) only changes which version the
//! *next* batch takes. So every batch is processed by exactly one version, none is lost or
//! run twice across a swap, and a file that fails to load never displaces a working version.
//!
//! A version's health is kept per tenant: batches of one tenant that make it fail
//! quarantine it for that tenant only, and every other tenant's batches still run on it.
//!
//! A version that starts serving baseline code (see [`Tier`]) is compiled optimized on a
//! thread of its own, and replaces itself with that code when done: the same version, with
//! its health, so nothing but speed changes for the batches after.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use super::error::{CallError, CallErrorKind, LoadError};
use super::loaded::{LoadedPlugin, PluginId, World, version_of};
use super::runtime::{PluginLimits, Runtime, Source, Tier};
use crate::telemetry::{CallOutcome, Metrics, PluginCallLabels, PluginLabels, PluginVersionLabels};
use crate::tenant::TenantId;

/// Settings of a plugin directory.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The directory holding `NAME.wasm` files.
    pub dir: PathBuf,
    /// Limits of plugins without an override.
    pub default_limits: PluginLimits,
    /// Per-plugin limits, by name.
    pub limits: BTreeMap<String, PluginLimits>,
    /// Consecutive failed batches after which a plugin version is quarantined.
    pub quarantine_after: u32,
}

impl RegistryConfig {
    /// The limits of plugin `name`.
    pub fn limits_of(&self, name: &str) -> PluginLimits {
        self.limits
            .get(name)
            .copied()
            .unwrap_or(self.default_limits)
    }
}

/// Whether a plugin serves.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    /// Serving batches.
    Serving,
    /// Not called for some tenants until a new version arrives: their batches are
    /// dead-lettered. Other tenants' batches still run.
    Quarantined {
        /// Consecutive failures that tripped it (for the tenant it tripped last).
        failures: u32,
        /// The last error.
        last_error: String,
        /// For how many tenants (each tenant's batches quarantine it for that tenant).
        tenants: usize,
    },
}

/// What an operator sees of one plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// Plugin name.
    pub name: String,
    /// Serving version (content hash prefix); none if no version ever loaded.
    pub version: Option<String>,
    /// Its world.
    pub world: Option<&'static str>,
    /// Serving, or quarantined for some tenants.
    pub health: Option<Health>,
    /// The compiler of the serving version's code.
    pub tier: Option<Tier>,
    /// Batches the serving version processed (all tenants).
    pub batches_ok: u64,
    /// Batches the serving version failed.
    pub batches_failed: u64,
    /// The last load error of this plugin's file, if its latest content failed to load.
    pub load_error: Option<String>,
    /// The version (content hash prefix) of the content that failed to load.
    pub failed_version: Option<String>,
}

/// The latest content of a plugin file failed to load.
#[derive(Debug)]
struct FailedLoad {
    /// Its version, when the file could be read.
    version: Option<String>,
    /// Why.
    error: String,
}

/// One tenant's record of one version: its batches, and the last error of a run of
/// failures once they quarantine it.
#[derive(Debug, Default)]
struct Counters {
    quarantined: Option<String>,
    consecutive_failures: u32,
    batches_ok: u64,
    batches_failed: u64,
}

/// Each tenant's counters of one version.
type TenantCounters = Arc<Mutex<HashMap<TenantId, Counters>>>;

/// One plugin: its serving version and that version's health for each tenant.
pub struct PluginSlot {
    name: String,
    /// Serving version and its counters, swapped together.
    current: RwLock<(Arc<LoadedPlugin>, TenantCounters)>,
    quarantine_after: u32,
    metrics: Arc<Metrics>,
}

/// The result of running one batch through a slot.
pub struct Outcome<R> {
    /// The version that ran (or refused) the batch.
    pub plugin: PluginId,
    /// What it returned.
    pub result: Result<R, CallError>,
}

impl PluginSlot {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The serving version.
    pub fn current(&self) -> Arc<LoadedPlugin> {
        self.read().0.clone()
    }

    /// Runs one batch of `tenant` on the serving version (taken once, here), unless it is
    /// quarantined for `tenant`, and records the outcome against that version and tenant.
    /// `points_in` counts the batch for the metrics; `count_out` counts what came back.
    pub fn run<R>(
        &self,
        tenant: &TenantId,
        points_in: usize,
        count_out: impl Fn(&R) -> usize,
        call: impl FnOnce(&LoadedPlugin) -> Result<R, CallError>,
    ) -> Outcome<R> {
        let (plugin, counters) = self.read().clone();
        let id = plugin.id().clone();
        let labels = version_labels(&id);
        let quarantined = lock(&counters).get(tenant).and_then(|c| {
            c.quarantined
                .as_ref()
                .map(|last_error| CallErrorKind::Quarantined {
                    failures: c.consecutive_failures,
                    last_error: last_error.clone(),
                })
        });
        if let Some(kind) = quarantined {
            self.count_call(&labels, CallOutcome::Quarantined);
            return Outcome {
                plugin: id.clone(),
                result: Err(CallError { plugin: id, kind }),
            };
        }
        let started = Instant::now();
        let result = call(&plugin);
        self.metrics
            .plugin_call_seconds
            .get_or_create(&PluginLabels {
                plugin: self.name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .plugin_points_in
            .get_or_create(&labels)
            .inc_by(points_in as u64);
        let mut all = lock(&counters);
        let c = all.entry(tenant.clone()).or_default();
        match &result {
            Ok(value) => {
                c.batches_ok += 1;
                c.consecutive_failures = 0;
                let out = count_out(value);
                self.metrics
                    .plugin_points_out
                    .get_or_create(&labels)
                    .inc_by(out as u64);
                self.count_call(&labels, CallOutcome::Ok);
                // Per batch, not per point; the version makes every batch attributable.
                tracing::debug!(plugin = %id, points_in, points_out = out, "Batch processed.");
            }
            Err(error) => {
                c.batches_failed += 1;
                // The host's own trouble says nothing of the plugin's health.
                if !matches!(error.kind, CallErrorKind::Host(_)) {
                    c.consecutive_failures += 1;
                }
                self.count_call(&labels, CallOutcome::Failed);
                tracing::warn!(plugin = %id, %tenant, %error, "Plugin call failed; the batch goes to dead letters.");
                if c.consecutive_failures >= self.quarantine_after && c.quarantined.is_none() {
                    c.quarantined = Some(error.kind.to_string());
                    let failures = c.consecutive_failures;
                    let tenants = all.values().filter(|c| c.quarantined.is_some()).count();
                    self.metrics
                        .plugin_quarantined
                        .get_or_create(&PluginLabels {
                            plugin: self.name.clone(),
                        })
                        .set(i64::try_from(tenants).unwrap_or(i64::MAX));
                    tracing::error!(plugin = %id, %tenant, failures, "Plugin quarantined for this tenant after repeated failures; its batches are dead-lettered until a new version is deployed.");
                }
            }
        }
        Outcome { plugin: id, result }
    }

    fn count_call(&self, labels: &PluginVersionLabels, outcome: CallOutcome) {
        self.metrics
            .plugin_batches
            .get_or_create(&PluginCallLabels {
                plugin: labels.plugin.clone(),
                version: labels.version.clone(),
                outcome,
            })
            .inc();
    }

    /// Makes `plugin` the serving version, with fresh health.
    fn swap(&self, plugin: LoadedPlugin) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        self.metrics
            .plugin_info
            .get_or_create(&version_labels(current.0.id()))
            .set(0);
        self.metrics
            .plugin_info
            .get_or_create(&version_labels(plugin.id()))
            .set(1);
        self.metrics
            .plugin_quarantined
            .get_or_create(&PluginLabels {
                plugin: self.name.clone(),
            })
            .set(0);
        *current = (Arc::new(plugin), TenantCounters::default());
    }

    /// Replaces `baseline` with `optimized`, the same version compiled optimized, keeping
    /// its health; false when `baseline` no longer serves (a new version came meanwhile).
    fn tier_up(&self, baseline: &Arc<LoadedPlugin>, optimized: LoadedPlugin) -> bool {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&current.0, baseline) {
            return false;
        }
        current.0 = Arc::new(optimized);
        true
    }

    fn status(&self) -> PluginStatus {
        let (plugin, counters) = self.read().clone();
        let all = lock(&counters);
        // Tenants are not named: /health is not authenticated.
        let quarantined: Vec<&Counters> =
            all.values().filter(|c| c.quarantined.is_some()).collect();
        let health = match quarantined.first() {
            None => Health::Serving,
            Some(c) => Health::Quarantined {
                failures: c.consecutive_failures,
                last_error: c.quarantined.clone().unwrap_or_default(),
                tenants: quarantined.len(),
            },
        };
        PluginStatus {
            name: self.name.clone(),
            version: Some(plugin.id().version.to_string()),
            world: Some(plugin.world().name()),
            health: Some(health),
            tier: Some(plugin.tier()),
            batches_ok: all.values().map(|c| c.batches_ok).sum(),
            batches_failed: all.values().map(|c| c.batches_failed).sum(),
            load_error: None,
            failed_version: None,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Arc<LoadedPlugin>, TenantCounters)> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay consistent under a panic (plain field updates), so poison is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn version_labels(id: &PluginId) -> PluginVersionLabels {
    PluginVersionLabels {
        plugin: id.name.to_string(),
        version: id.version.to_string(),
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new plugin appeared.
    Added(PluginId),
    /// A new version replaced the serving one.
    Swapped {
        /// The version that served until now.
        old: PluginId,
        /// The version serving from now on.
        new: PluginId,
    },
    /// The file's content is the serving version already.
    Unchanged,
}

/// The plugins of one directory (the library every tenant may use), and each tenant's
/// own plugins (deployed over the API; no other tenant sees them).
pub struct PluginRegistry {
    runtime: Arc<Runtime>,
    config: RegistryConfig,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    /// Each tenant's own plugins, by tenant and name.
    owned: RwLock<BTreeMap<(TenantId, String), Arc<PluginSlot>>>,
    load_errors: Mutex<BTreeMap<String, FailedLoad>>,
    metrics: Arc<Metrics>,
    /// Serializes reloads, so two events for one file can't race to swap.
    reloading: Mutex<()>,
}

impl PluginRegistry {
    /// Loads every plugin file of the directory. Files that fail are reported in
    /// [`statuses`](Self::statuses) and logged; they don't stop the others.
    ///
    /// # Errors
    /// When the directory can't be read.
    pub fn open(
        runtime: Arc<Runtime>,
        config: RegistryConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.dir)?;
        let registry = Arc::new(Self {
            runtime,
            config,
            slots: RwLock::default(),
            owned: RwLock::default(),
            load_errors: Mutex::default(),
            metrics,
            reloading: Mutex::new(()),
        });
        let mut files: Vec<PathBuf> = std::fs::read_dir(&registry.config.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| plugin_name(p).is_some())
            .collect();
        files.sort();
        for path in files {
            // Errors are recorded by reload itself.
            let _ = registry.reload(&path);
        }
        Ok(registry)
    }

    /// The directory this registry serves.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The slot of plugin `name`.
    pub fn get(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every plugin's status, by name, including files that never loaded.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        let errors = lock(&self.load_errors);
        let mut out: BTreeMap<String, PluginStatus> = slots
            .iter()
            .map(|(name, slot)| (name.clone(), slot.status()))
            .collect();
        for (name, error) in errors.iter() {
            let status = out.entry(name.clone()).or_insert_with(|| PluginStatus {
                name: name.clone(),
                version: None,
                world: None,
                health: None,
                tier: None,
                batches_ok: 0,
                batches_failed: 0,
                load_error: None,
                failed_version: None,
            });
            status.load_error = Some(error.error.clone());
            status.failed_version.clone_from(&error.version);
        }
        out.into_values().collect()
    }

    /// `tenant`'s own plugin `name`.
    pub fn owned(&self, tenant: &TenantId, name: &str) -> Option<Arc<PluginSlot>> {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(tenant.clone(), name.to_owned()))
            .cloned()
    }

    /// The plugin `name` as `tenant` sees it: its own, else the library's.
    pub fn for_tenant(&self, tenant: &TenantId, name: &str) -> Option<Arc<PluginSlot>> {
        self.owned(tenant, name).or_else(|| self.get(name))
    }

    /// Compiles and links the plugin file at `path` as plugin `name` (with `name`'s
    /// limits), checking it implements the world `tenant`'s serving version of `name`
    /// does, if there is one. Nothing is swapped in.
    ///
    /// # Errors
    /// The [`LoadError`] of the file, or of a world other than the serving version's.
    pub fn compile_owned(
        &self,
        tenant: &TenantId,
        name: &str,
        path: &Path,
    ) -> Result<LoadedPlugin, LoadError> {
        let limits = self.config.limits_of(name);
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let source = Source::new(&bytes, path);
        let tier = self.runtime.first_tier(&source);
        let plugin = self.runtime.load(name, &source, limits, tier)?;
        check_world(&self.owned(tenant, name), plugin, path)
    }

    /// Makes `plugin` (from [`PluginRegistry::compile_owned`]) the serving version of
    /// `tenant`'s own plugin of its name: at once, for the next batch.
    pub fn activate_owned(&self, tenant: &TenantId, plugin: LoadedPlugin) {
        let name = plugin.id().name.to_string();
        if let Some(slot) = self.owned(tenant, &name) {
            if slot.current().id() != plugin.id() {
                slot.swap(plugin);
                optimize_in_background(&slot);
            }
            return;
        }
        let slot = Arc::new(PluginSlot {
            name: name.clone(),
            current: RwLock::new((Arc::new(plugin), TenantCounters::default())),
            quarantine_after: self.config.quarantine_after.max(1),
            metrics: self.metrics.clone(),
        });
        optimize_in_background(&slot);
        self.owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant.clone(), name), slot);
    }

    /// Forgets `tenant`'s own plugins (the tenant is deleted).
    pub fn forget_owned(&self, tenant: &TenantId) {
        self.owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, _), _| t != tenant);
    }

    /// Loads the plugin file at `path` and, if it is new content that compiles, links and
    /// implements the same world as the serving version, swaps it in. Otherwise the serving
    /// version stays and the error is recorded and returned.
    ///
    /// # Errors
    /// The [`LoadError`] of the file. Paths that are not plugin files are `Unchanged`.
    pub fn reload(&self, path: &Path) -> Result<Reloaded, LoadError> {
        let Some(name) = plugin_name(path) else {
            return Ok(Reloaded::Unchanged);
        };
        let _one_at_a_time = lock(&self.reloading);
        let existing = self.get(&name);
        let limits = self.config.limits_of(&name);
        let (result, version) = match std::fs::read(path) {
            Ok(bytes) => {
                let source = Source::new(&bytes, path);
                let tier = self.runtime.first_tier(&source);
                let result = self
                    .runtime
                    .load(&name, &source, limits, tier)
                    .and_then(|plugin| check_world(&existing, plugin, path));
                (result, Some(version_of(&source.digest).to_owned()))
            }
            Err(source) => {
                let path = path.to_owned();
                (Err(LoadError::Read { path, source }), None)
            }
        };
        let plugin = match result {
            Ok(plugin) => plugin,
            Err(error) => {
                self.metrics
                    .plugin_load_failures
                    .get_or_create(&PluginLabels {
                        plugin: name.clone(),
                    })
                    .inc();
                tracing::error!(plugin = %name, %error, "Plugin file failed to load; the serving version, if any, stays.");
                let failed = FailedLoad {
                    version,
                    error: error.to_string(),
                };
                lock(&self.load_errors).insert(name, failed);
                return Err(error);
            }
        };
        lock(&self.load_errors).remove(&name);
        let new = plugin.id().clone();
        let reloaded = match existing {
            Some(slot) => {
                let old = slot.current().id().clone();
                if old == new {
                    return Ok(Reloaded::Unchanged);
                }
                slot.swap(plugin);
                optimize_in_background(&slot);
                self.metrics
                    .plugin_swaps
                    .get_or_create(&PluginLabels {
                        plugin: name.clone(),
                    })
                    .inc();
                tracing::info!(plugin = %name, %old, %new, "Swapped in new plugin version.");
                Reloaded::Swapped { old, new }
            }
            None => {
                self.metrics
                    .plugin_info
                    .get_or_create(&version_labels(&new))
                    .set(1);
                let slot = Arc::new(PluginSlot {
                    name: name.clone(),
                    current: RwLock::new((Arc::new(plugin), TenantCounters::default())),
                    quarantine_after: self.config.quarantine_after.max(1),
                    metrics: self.metrics.clone(),
                });
                optimize_in_background(&slot);
                self.slots
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name, slot);
                tracing::info!(plugin = %new, "Loaded plugin.");
                Reloaded::Added(new)
            }
        };
        Ok(reloaded)
    }
}

/// When `slot` serves baseline code, compiles it optimized on a thread and swaps that in,
/// unless another version serves by then. A failed compile leaves the baseline code
/// serving (it is the same version, which works).
fn optimize_in_background(slot: &Arc<PluginSlot>) {
    let baseline = slot.current();
    if baseline.tier() != Tier::Baseline {
        return;
    }
    let weak = Arc::downgrade(slot);
    let spawned = std::thread::Builder::new()
        .name("sluice-optimize".into())
        .spawn(move || {
            let started = Instant::now();
            let id = baseline.id().clone();
            match baseline.optimize() {
                Some(Ok(optimized)) => {
                    let swapped = weak.upgrade().is_some_and(|s| s.tier_up(&baseline, optimized));
                    if swapped {
                        tracing::info!(plugin = %id, took_ms = started.elapsed().as_millis(), "Plugin version now runs optimized code.");
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(plugin = %id, %error, "Optimizing compile failed; the version keeps running baseline code.");
                }
                None => {}
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(plugin = %slot.name, %error, "Could not start the optimizing compile; the version keeps running baseline code.");
    }
}

fn check_world(
    existing: &Option<Arc<PluginSlot>>,
    plugin: LoadedPlugin,
    path: &Path,
) -> Result<LoadedPlugin, LoadError> {
    let Some(slot) = existing else {
        return Ok(plugin);
    };
    let expected: World = slot.current().world();
    if plugin.world() != expected {
        return Err(LoadError::WorldChanged {
            path: path.to_owned(),
            name: slot.name.clone(),
            expected: expected.name(),
            found: plugin.world().name(),
        });
    }
    Ok(plugin)
}

/// The plugin name of a path: the stem of a `NAME.wasm` file whose name doesn't start with a
/// dot (temporary files of editors and atomic copies are ignored).
pub fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".wasm")?;
    (!stem.is_empty() && !file.starts_with('.')).then(|| stem.to_owned())
}
