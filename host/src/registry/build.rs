//! From specs to what runs: each tenant's pipeline built as the lanes run it (stages on
//! their plugins, rules, sinks), its tiers as queries see them, and the token directory.
//! Building is how a spec is checked whole: what doesn't build is refused, naming the
//! stage or rule and the field.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::TenantSpec;
use crate::aggregate::Function;
use crate::config::PipelineSpec;
use crate::lookup::LookupTables;
use crate::pipeline::{
    AlertRule, AlertStage, DeadLetterLog, Pipelines, RuleSink, Stage, TenantPipeline, Webhook,
};
use crate::plugin::{CallEnv, Params, PluginRegistry, PluginSlot, StageState, World};
use crate::query::TierInfo;
use crate::store::Retention;
use crate::tenant::{TenantId, Tokens};
use crate::time::secs;
use crate::window::{RollupRule, WindowSettings};

/// What ingest and queries know of one tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantView {
    /// How long it keeps raw points.
    pub retention: Duration,
    /// Whether its stages may change points' types (transforms).
    pub retyping: bool,
    /// Its rollup tiers.
    pub tiers: Vec<TierInfo>,
}

/// Everything built from the registry's specs, swapped in whole on each change.
#[derive(Default)]
pub struct Tenancy {
    /// Token → tenant.
    pub tokens: Tokens,
    /// What ingest and queries know of each tenant.
    pub tenants: HashMap<TenantId, TenantView>,
    /// Each tenant's pipeline, as the lanes run it.
    pub pipelines: Arc<Pipelines>,
}

/// What building needs: the plugins, where failed batches go, the service's lookup
/// tables and window settings.
pub struct Builder {
    /// The plugins tenants' stages may use.
    pub plugins: Arc<PluginRegistry>,
    /// Where failed batches are kept.
    pub dead_letters: Arc<DeadLetterLog>,
    /// The service's lookup tables (a tenant's own hide them).
    pub lookups: LookupTables,
    /// How far out of order points may come, in nanoseconds.
    pub disorder: crate::point::Nanos,
    /// How far ahead of the clock a point may be and still be windowed, in nanoseconds.
    pub max_future: crate::point::Nanos,
    /// Where webhooks run, and plugins deployed by tenants compile.
    pub runtime: tokio::runtime::Handle,
    /// Where tenants' own plugins are kept: a directory per tenant and plugin, a file per
    /// version.
    pub owned_plugins: PathBuf,
}

/// One tenant, built.
struct Built {
    pipeline: TenantPipeline,
    view: TenantView,
}

/// `what` (a stage or rule) wrong in field `field`: the message a refusal carries.
fn wrong(what: &str, field: &str, why: impl std::fmt::Display) -> String {
    format!("{what}: `{field}`: {why}")
}

impl Builder {
    /// The directory of `tenant`'s own plugins (the name hex-encoded: any name is a safe
    /// path).
    pub fn owned_dir(&self, tenant: &TenantId) -> PathBuf {
        self.owned_plugins.join(hex::encode(tenant.as_str()))
    }

    /// The file of version `version` of `tenant`'s own plugin `name`.
    pub fn owned_file(&self, tenant: &TenantId, name: &str, version: &str) -> PathBuf {
        self.owned_dir(tenant)
            .join(name)
            .join(format!("{version}.wasm"))
    }

    /// Everything `specs` describe.
    ///
    /// # Errors
    /// The first tenant that doesn't build, and why.
    pub fn build<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a TenantSpec>,
    ) -> Result<Tenancy, (TenantId, String)> {
        let mut tenancy = Tenancy::default();
        let mut pipelines = Pipelines::default();
        for spec in specs {
            let built = self
                .tenant(spec)
                .map_err(|message| (spec.name.clone(), message))?;
            for token in &spec.tokens {
                let digest = hex::decode(&token.digest)
                    .ok()
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .ok_or_else(|| {
                        (
                            spec.name.clone(),
                            format!("token `{}` has no valid digest", token.id),
                        )
                    })?;
                tenancy.tokens.insert_digest(digest, spec.name.clone());
            }
            pipelines.insert(spec.name.clone(), built.pipeline);
            tenancy.tenants.insert(spec.name.clone(), built.view);
        }
        tenancy.pipelines = Arc::new(pipelines);
        Ok(tenancy)
    }

    /// The plugin `name` for `what` of `tenant` (its own, else the library's), or why
    /// there is none.
    fn plugin(&self, tenant: &TenantId, what: &str, name: &str) -> Result<Arc<PluginSlot>, String> {
        self.plugins.for_tenant(tenant, name).ok_or_else(|| {
            let why = self
                .plugins
                .statuses()
                .into_iter()
                .find(|s| s.name == name)
                .and_then(|s| s.load_error)
                .map_or_else(
                    || format!("no plugin `{name}` in {}", self.plugins.dir().display()),
                    |e| format!("plugin `{name}` does not load: {e}"),
                );
            wrong(what, "plugin", why)
        })
    }

    /// `spec`'s pipeline, tiers and settings, checked.
    fn tenant(&self, spec: &TenantSpec) -> Result<Built, String> {
        let id = &spec.name;
        let p: &PipelineSpec = &spec.pipeline;
        if spec.retention_days == 0 {
            return Err("`retention_days` must be at least 1".into());
        }
        p.check(spec.retention_days)?;
        let mut own = LookupTables::default();
        for (name, csv) in &p.lookups {
            own.parse_csv(name, "the tenant's pipeline", csv)
                .map_err(|e| wrong(&format!("lookup `{name}`"), "csv", e))?;
        }
        let lookups = Arc::new(self.lookups.with(&own));
        let env = |params: &std::collections::BTreeMap<String, String>| CallEnv {
            params: Arc::new(params.clone().into_iter().collect::<Params>()),
            lookups: lookups.clone(),
            state: Arc::new(StageState::default()),
        };
        let mut stages = Vec::new();
        let mut retyping = false;
        for stage in &p.stages {
            let what = format!("stage `{}`", stage.name);
            let slot = self.plugin(id, &what, &stage.plugin)?;
            retyping |= slot.current().world() == World::Transform;
            let built = Stage::new(
                id,
                &stage.name,
                slot,
                env(&stage.params),
                self.dead_letters.clone(),
            )
            .map_err(|e| wrong(&what, "plugin", e))?;
            stages.push(built);
        }
        let tiers_declared = p.tiers(spec.retention_days)?;
        let mut rules = Vec::new();
        let mut sinks = Vec::new();
        for rollup in &p.rollups {
            // Checked by `check`: each rollup builds, and writes a declared tier.
            rules.push(RollupRule::build(rollup).map_err(|e| e.to_string())?);
            let kept = tiers_declared.iter().find(|t| t.name == rollup.tier);
            sinks.push(RuleSink::Tier {
                name: rollup.tier.clone(),
                retention: kept.map_or(Retention::Forever, |t| Retention::For(t.retention)),
            });
        }
        let mut tiers = Vec::new();
        for tier in tiers_declared {
            if let Some(index) = p.rollups.iter().position(|r| r.name == tier.rule) {
                tiers.push(TierInfo {
                    name: tier.name,
                    rule: rules[index].clone(),
                    retention: tier.retention,
                });
            }
        }
        for rule in &p.alerts {
            let what = format!("alert `{}`", rule.name);
            let slot = self.plugin(id, &what, &rule.plugin)?;
            let aggregates = if rule.aggregates.is_empty() {
                Function::BASIC.to_vec()
            } else {
                rule.aggregates
                    .iter()
                    .map(|a| a.parse().map_err(|e| wrong(&what, "aggregates", e)))
                    .collect::<Result<_, _>>()?
            };
            rules.push(RollupRule::for_alert(
                &rule.name,
                &rule.measurement,
                &rule.field,
                secs(rule.window_secs),
                secs(rule.grace_secs),
                aggregates,
            ));
            let stage = AlertStage::new(
                id,
                &rule.name,
                slot,
                env(&rule.params),
                self.dead_letters.clone(),
            )
            .map_err(|e| wrong(&what, "plugin", e))?;
            let webhook = rule
                .webhook_url
                .as_deref()
                .map(|url| Webhook::new(url, self.runtime.clone()))
                .transpose()
                .map_err(|e| wrong(&what, "webhook_url", e))?;
            sinks.push(RuleSink::Alert(Box::new(AlertRule { stage, webhook })));
        }
        let windows = (!rules.is_empty()).then(|| WindowSettings {
            rules: rules.into(),
            disorder: self.disorder,
            max_future: self.max_future,
        });
        let retention = Duration::from_secs(u64::from(spec.retention_days) * 86_400);
        Ok(Built {
            pipeline: TenantPipeline {
                stages,
                windows,
                sinks,
                retention: Retention::For(retention),
            },
            view: TenantView {
                retention,
                retyping,
                tiers,
            },
        })
    }
}

/// Runs each plugin of `pipeline` (as built) once on nothing, with its parameters: a plugin
/// that refuses its parameters says so here, not on the first batch. Nothing is counted
/// against the plugin's health.
///
/// # Errors
/// The first stage or rule whose plugin refuses, and why.
pub fn probe(pipeline: &TenantPipeline) -> Result<(), String> {
    for stage in &pipeline.stages {
        stage
            .probe()
            .map_err(|e| wrong(&format!("stage `{}`", short(stage.name())), "params", e))?;
    }
    for sink in &pipeline.sinks {
        if let RuleSink::Alert(alert) = sink {
            let what = format!("alert `{}`", short(alert.stage.name()));
            alert.stage.probe().map_err(|e| wrong(&what, "params", e))?;
        }
    }
    Ok(())
}

/// A stage's own name, without its tenant's (`tenant/stage`).
fn short(name: &str) -> &str {
    name.split_once('/').map_or(name, |(_, n)| n)
}
