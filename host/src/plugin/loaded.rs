//! A compiled, linked plugin version, ready to run batches.
//!
//! Linking happens once per version ([`InstancePre`](wasmtime::component::InstancePre)).
//! A call runs on an idle instance of the version's [`Pool`] or a new one, in its own
//! [`Store`] with a memory cap and an epoch deadline, so a bad call can't outlive its batch;
//! only an instance whose call succeeded is reused.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Store, Trap};

use super::batch::lend;
use super::bindings::alert::AlertPre;
use super::bindings::filter::FilterPre;
use super::bindings::transform::TransformPre;
use super::bindings::types::PluginError;
use super::convert::alert;
use super::ctx::{CallEnv, PluginCtx};
use super::error::{CallError, CallErrorKind, LoadError};
use super::pool::{Pool, Warm, WorldPre};
use super::runtime::{EPOCH_TICK, PluginLimits, Runtime, Source, Tier};
use crate::columns::Columns;
use crate::point::{Alert, Point, WindowResult};

/// Pauses before trying again an instantiation the operating system refused: long enough
/// for a transient refusal to pass (Linux waits about 150 ms for a page's extra references
/// to go before refusing to seal a memory image, `LAST_SCAN` in mm/memfd.c), short beside
/// a call's deadline.
const HOST_RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_millis(500),
];

/// The operating system's error, when instantiation failed because the host was refused a
/// resource (wasmtime sealing the memfd of a memory image, mapping memory) rather than
/// because of anything the guest did: guest traps, the memory cap and the deadline carry no
/// `io::Error`.
fn refused_by_host(error: &wasmtime::Error) -> Option<&std::io::Error> {
    if error.downcast_ref::<Trap>().is_some() {
        return None;
    }
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// Keeps or drops points.
    Filter,
    /// Rewrites points.
    Transform,
    /// Turns closed windows into alerts.
    Alert,
}

impl World {
    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Transform => "transform",
            World::Alert => "alert",
        }
    }

    /// The function the world exports.
    fn export(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Transform => "transform",
            World::Alert => "evaluate",
        }
    }

    const ALL: [World; 3] = [World::Filter, World::Transform, World::Alert];
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A plugin version: its name and the first 12 hex digits of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginId {
    /// The plugin's name (its file stem).
    pub name: Arc<str>,
    /// Content hash prefix, identifying the version.
    pub version: Arc<str>,
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

enum Entry {
    Filter(Pool<FilterPre<PluginCtx>>),
    Transform(Pool<TransformPre<PluginCtx>>),
    Alert(Pool<AlertPre<PluginCtx>>),
}

/// A loaded plugin version.
pub struct LoadedPlugin {
    id: PluginId,
    world: World,
    tier: Tier,
    /// Kept by baseline code only: what to compile optimized.
    source: Option<Source>,
    size_bytes: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    limits: PluginLimits,
    entry: Entry,
    runtime: Arc<Runtime>,
}

/// The WIT package (and version) of the plugin contract this host speaks.
pub const WIT_PACKAGE: &str = "sluice:plugin@0.2.0";

/// Hex digits of a component's SHA-256 that name its version.
const VERSION_DIGITS: usize = 12;

/// The version of the component whose SHA-256, hex, is `digest`.
pub fn version_of(digest: &str) -> &str {
    &digest[..VERSION_DIGITS.min(digest.len())]
}

impl LoadedPlugin {
    pub(super) fn link(
        runtime: &Arc<Runtime>,
        name: &str,
        source: &Source,
        component: Component,
        limits: PluginLimits,
        tier: Tier,
    ) -> Result<Self, LoadError> {
        let path = &source.path;
        let engine = runtime.engine(tier);
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(n, item)| match item.ty {
                ComponentItem::ComponentInstance(_) => n.to_owned(),
                _ => format!("{n} (not an interface)"),
            })
            .collect();
        // Another version of the package would fail linking with a type mismatch deep in
        // `batch`; say what it is instead.
        let (_, wanted) = WIT_PACKAGE.split_once('@').unwrap_or_default();
        if let Some(found) = imports.iter().find_map(|i| {
            let version = i.strip_prefix("sluice:plugin/")?.split_once('@')?.1;
            let version = version.split_whitespace().next().unwrap_or(version);
            (version != wanted).then(|| version.to_owned())
        }) {
            return Err(LoadError::OtherContract {
                path: path.to_owned(),
                found,
            });
        }
        let world = World::ALL
            .into_iter()
            .find(|w| exports.iter().any(|e| e == w.export()))
            .ok_or_else(|| LoadError::UnknownWorld {
                path: path.to_owned(),
                found: exports.clone(),
            })?;
        let link_err = |e: wasmtime::Error| LoadError::Link {
            path: path.to_owned(),
            world: world.name(),
            message: format!("{e:#}"),
        };
        let pre = runtime
            .linker(tier)
            .instantiate_pre(&component)
            .map_err(link_err)?;
        let entry = match world {
            World::Filter => Entry::Filter(runtime.pool(FilterPre::new(pre).map_err(link_err)?)),
            World::Transform => {
                Entry::Transform(runtime.pool(TransformPre::new(pre).map_err(link_err)?))
            }
            World::Alert => Entry::Alert(runtime.pool(AlertPre::new(pre).map_err(link_err)?)),
        };
        Ok(Self {
            id: PluginId {
                name: name.into(),
                version: version_of(&source.digest).into(),
            },
            world,
            tier,
            source: (tier == Tier::Baseline).then(|| source.clone()),
            size_bytes: source.bytes.len(),
            imports,
            exports,
            limits,
            entry,
            runtime: runtime.clone(),
        })
    }

    /// Name and version.
    pub fn id(&self) -> &PluginId {
        &self.id
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// The compiler its code comes from.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The same version compiled optimized, from baseline code (none when it is optimized
    /// already).
    ///
    /// # Errors
    /// The [`LoadError`] of the optimizing compile.
    pub fn optimize(&self) -> Option<Result<LoadedPlugin, LoadError>> {
        let source = self.source.as_ref()?;
        Some(
            self.runtime
                .load(&self.id.name, source, self.limits, Tier::Optimized),
        )
    }

    /// Size of the component file.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// The interfaces it imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The names it exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Runs a filter over `points`: one verdict per point, true keeps it.
    ///
    /// # Errors
    /// As [`LoadedPlugin::filter_columns`].
    pub fn filter(&self, points: &[Point], env: &CallEnv) -> Result<Vec<bool>, CallError> {
        self.filter_columns(&mut Columns::from_points(points), env)
    }

    /// Runs a filter over the points of `columns`, lent to the plugin and given back: one
    /// verdict per point, true keeps it.
    ///
    /// # Errors
    /// A [`CallError`] when the plugin traps, times out, overruns memory, rejects the batch
    /// or returns the wrong number of verdicts.
    pub fn filter_columns(
        &self,
        columns: &mut Columns,
        env: &CallEnv,
    ) -> Result<Vec<bool>, CallError> {
        let Entry::Filter(pool) = &self.entry else {
            return Err(self.wrong_world(World::Filter));
        };
        let n = columns.len();
        lend(columns, |batch| {
            self.call(
                pool,
                env,
                |store, plugin| plugin.call_filter(store, batch),
                |verdicts| {
                    if verdicts.len() == n {
                        Ok(verdicts)
                    } else {
                        Err(format!(
                            "returned {} verdicts for {n} points",
                            verdicts.len()
                        ))
                    }
                },
            )
        })
    }

    /// Runs a transform over `points`: the points that replace them, tags sorted.
    ///
    /// # Errors
    /// As [`LoadedPlugin::transform_columns`].
    pub fn transform(&self, points: &[Point], env: &CallEnv) -> Result<Vec<Point>, CallError> {
        self.transform_columns(&mut Columns::from_points(points), env)
    }

    /// Runs a transform over the points of `columns`, lent to the plugin and given back:
    /// the points that replace them, tags sorted.
    ///
    /// # Errors
    /// A [`CallError`] when the plugin fails, or returns a point without fields.
    pub fn transform_columns(
        &self,
        columns: &mut Columns,
        env: &CallEnv,
    ) -> Result<Vec<Point>, CallError> {
        let Entry::Transform(pool) = &self.entry else {
            return Err(self.wrong_world(World::Transform));
        };
        lend(columns, |batch| {
            self.call(
                pool,
                env,
                |store, plugin| plugin.call_transform(store, batch),
                |out| {
                    let mut out = Columns::from(out)
                        .to_points()
                        .map_err(|e| format!("returned a batch that breaks its layout: {e}"))?;
                    for (i, point) in out.iter_mut().enumerate() {
                        if point.fields.is_empty() || point.measurement.is_empty() {
                            return Err(format!("output point {i} has no measurement or no field"));
                        }
                        point.sort_tags();
                    }
                    Ok(out)
                },
            )
        })
    }

    /// Runs an alert plugin over closed windows: the alerts they raise.
    ///
    /// # Errors
    /// A [`CallError`] when the plugin fails.
    pub fn evaluate(
        &self,
        windows: &[WindowResult],
        env: &CallEnv,
    ) -> Result<Vec<Alert>, CallError> {
        let Entry::Alert(pool) = &self.entry else {
            return Err(self.wrong_world(World::Alert));
        };
        let lowered: Vec<_> = windows.iter().cloned().map(Into::into).collect();
        self.call(
            pool,
            env,
            |store, plugin| plugin.call_evaluate(store, &lowered),
            |alerts| {
                alerts
                    .into_iter()
                    .map(|a| match windows.get(a.window as usize) {
                        Some(window) => Ok(alert(a, window)),
                        None => Err(format!(
                            "an alert names window {} of {}",
                            a.window,
                            windows.len()
                        )),
                    })
                    .collect()
            },
        )
    }

    /// Instantiates the component once, outside any batch, to show problems that only
    /// instantiation finds (a start function that traps, memory the cap can't hold) before
    /// the plugin serves. The instance then waits in the pool for the first batch.
    ///
    /// # Errors
    /// A [`CallError`] saying why the component can't be instantiated.
    pub fn warm_up(&self) -> Result<(), CallError> {
        let env = CallEnv::default();
        match &self.entry {
            Entry::Filter(pool) => self.warm_up_in(pool, &env),
            Entry::Transform(pool) => self.warm_up_in(pool, &env),
            Entry::Alert(pool) => self.warm_up_in(pool, &env),
        }
    }

    fn warm_up_in<P: WorldPre>(&self, pool: &Pool<P>, env: &CallEnv) -> Result<(), CallError> {
        let _permit = self.runtime.permits.acquire();
        let warm = self.instantiate(pool, env, Instant::now())?;
        pool.give_back(warm);
        Ok(())
    }

    /// Idle instances kept for the next batches.
    pub fn idle_instances(&self) -> usize {
        match &self.entry {
            Entry::Filter(pool) => pool.idle(),
            Entry::Transform(pool) => pool.idle(),
            Entry::Alert(pool) => pool.idle(),
        }
    }

    /// A new instance in a new store with the memory cap and a deadline of one call.
    ///
    /// An attempt the operating system refused (see [`refused_by_host`]) is tried again in
    /// a fresh store, a few times with a growing pause: it says nothing about the plugin.
    fn instantiate<P: WorldPre>(
        &self,
        pool: &Pool<P>,
        env: &CallEnv,
        started: Instant,
    ) -> Result<Warm<P::Instance>, CallError> {
        let mut pauses = HOST_RETRY_PAUSES.iter();
        loop {
            let ctx = PluginCtx::new(self.id.clone(), env.clone(), self.limits.memory_bytes);
            let mut store = Store::new(self.runtime.engine(self.tier), ctx);
            store.limiter(|ctx| &mut ctx.memory);
            self.set_deadline(&mut store);
            let error = match pool.pre.instantiate(&mut store) {
                Ok(instance) => return Ok(Warm { store, instance }),
                Err(error) => error,
            };
            store.data().flush_stdio();
            if let Some(refusal) = refused_by_host(&error).filter(|_| !store.data().memory.exceeded)
            {
                if let Some(pause) = pauses.next() {
                    tracing::warn!(plugin = %self.id, %refusal, ?pause, "The operating system refused to instantiate the plugin; trying again.");
                    std::thread::sleep(*pause);
                    continue;
                }
                // wasmtime's alternate form stops at the first foreign error: the OS's
                // reason (EBUSY, ENOMEM) is only in the chain.
                let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
                return Err(self.error(CallErrorKind::Host(causes.join(": "))));
            }
            return Err(self.error(self.classify(&error, store.data(), started)));
        }
    }

    fn set_deadline(&self, store: &mut Store<PluginCtx>) {
        let ticks = self
            .limits
            .timeout
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos());
        // One extra tick: the next tick may come at once, so N ticks guarantee only N-1 full
        // periods.
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1));
    }

    /// One bounded call on a pooled or new instance: memory cap, deadline (instantiation
    /// included); `check` turns what the guest returned into the answer or says how it
    /// breaks the contract. State is committed and the instance kept only when the call and
    /// the check succeed.
    fn call<P: WorldPre, R, T>(
        &self,
        pool: &Pool<P>,
        env: &CallEnv,
        run: impl FnOnce(
            &mut Store<PluginCtx>,
            &P::Instance,
        ) -> wasmtime::Result<Result<R, PluginError>>,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let _permit = self.runtime.permits.acquire();
        let started = Instant::now();
        let mut warm = match pool.take() {
            Some(mut warm) => {
                warm.store.data_mut().begin(env);
                self.set_deadline(&mut warm.store);
                warm
            }
            None => self.instantiate(pool, env, started)?,
        };
        let result = run(&mut warm.store, &warm.instance);
        warm.store.data().flush_stdio();
        match result.map(|r| r.map(check)) {
            Ok(Ok(Ok(value))) => {
                warm.store.data_mut().commit_state();
                if warm.store.data().reusable() {
                    pool.give_back(warm);
                }
                Ok(value)
            }
            Ok(Ok(Err(broken))) => Err(self.error(CallErrorKind::BadOutput(broken))),
            Ok(Err(rejected)) => Err(self.error(CallErrorKind::Rejected {
                message: rejected.message,
                index: rejected.index,
            })),
            Err(error) => Err(self.error(self.classify(&error, warm.store.data(), started))),
        }
    }

    fn classify(
        &self,
        error: &wasmtime::Error,
        ctx: &PluginCtx,
        started: Instant,
    ) -> CallErrorKind {
        if ctx.memory.exceeded {
            return CallErrorKind::MemoryLimit {
                limit_bytes: ctx.memory.limit_bytes,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return CallErrorKind::Timeout(started.elapsed().max(self.limits.timeout));
        }
        let what = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        // A Rust guest prints "panicked at FILE:LINE:COL:" and its message to stderr before
        // trapping: the most useful part of the report.
        let stderr = ctx.call_stderr();
        let stderr = String::from_utf8_lossy(&stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        match lines.len() {
            0 => CallErrorKind::Trap(what),
            n => CallErrorKind::Trap(format!(
                "{what}; guest stderr: {}",
                lines[n.saturating_sub(2)..].join(" ")
            )),
        }
    }

    fn error(&self, kind: CallErrorKind) -> CallError {
        CallError {
            plugin: self.id.clone(),
            kind,
        }
    }

    fn wrong_world(&self, wanted: World) -> CallError {
        self.error(CallErrorKind::WrongWorld {
            wanted: wanted.name(),
            actual: self.world.name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of a library the host calls, with the operating system's reason as its
    /// source, as memfd's "cannot add seals to the memfd" is.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot add seals to the memfd")]
    struct Sealing(#[source] std::io::Error);

    #[test]
    fn an_os_refusal_is_the_hosts_and_a_trap_or_a_plain_error_is_not() {
        let busy = std::io::Error::from_raw_os_error(16);
        let refused = wasmtime::Error::new(Sealing(busy)).context("instantiating");
        assert_eq!(
            refused_by_host(&refused).and_then(std::io::Error::raw_os_error),
            Some(16)
        );
        assert!(refused_by_host(&wasmtime::Error::new(Trap::UnreachableCodeReached)).is_none());
        assert!(refused_by_host(&wasmtime::Error::msg("unknown import")).is_none());
        // A trap raised while the host was doing I/O is still the guest's.
        let trap = wasmtime::Error::new(std::io::Error::other("disk")).context(Trap::StackOverflow);
        assert!(refused_by_host(&trap).is_none());
    }
}
