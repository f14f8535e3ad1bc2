//! A compiled, linked plugin version, ready to run batches.
//!
//! Linking happens once per version ([`InstancePre`](wasmtime::component::InstancePre));
//! every call gets a fresh [`Store`] with a memory cap and an epoch deadline, so a call
//! can't see another's data and a bad call can't outlive its batch.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Store, Trap};

use super::batch::encode;
use super::bindings::alert::AlertPre;
use super::bindings::filter::FilterPre;
use super::bindings::transform::TransformPre;
use super::bindings::types::PluginError;
use super::ctx::{CallEnv, PluginCtx};
use super::error::{CallError, CallErrorKind, LoadError};
use super::runtime::{EPOCH_TICK, PluginLimits, Runtime};
use crate::point::{Alert, Point, WindowResult};

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
    Filter(FilterPre<PluginCtx>),
    Transform(TransformPre<PluginCtx>),
    Alert(AlertPre<PluginCtx>),
}

/// A loaded plugin version.
pub struct LoadedPlugin {
    id: PluginId,
    world: World,
    size_bytes: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    limits: PluginLimits,
    entry: Entry,
    runtime: Arc<Runtime>,
}

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
        digest: &str,
        size_bytes: usize,
        component: Component,
        path: &Path,
        limits: PluginLimits,
    ) -> Result<Self, LoadError> {
        let engine = &runtime.engine;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(n, item)| match item.ty {
                ComponentItem::ComponentInstance(_) => n.to_owned(),
                _ => format!("{n} (not an interface)"),
            })
            .collect();
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
            .linker()
            .instantiate_pre(&component)
            .map_err(link_err)?;
        let entry = match world {
            World::Filter => Entry::Filter(FilterPre::new(pre).map_err(link_err)?),
            World::Transform => Entry::Transform(TransformPre::new(pre).map_err(link_err)?),
            World::Alert => Entry::Alert(AlertPre::new(pre).map_err(link_err)?),
        };
        Ok(Self {
            id: PluginId {
                name: name.into(),
                version: version_of(digest).into(),
            },
            world,
            size_bytes,
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
    /// A [`CallError`] when the plugin traps, times out, overruns memory, rejects the batch
    /// or returns the wrong number of verdicts.
    pub fn filter(&self, points: &[Point], env: &CallEnv) -> Result<Vec<bool>, CallError> {
        let Entry::Filter(pre) = &self.entry else {
            return Err(self.wrong_world(World::Filter));
        };
        let batch = encode(points);
        let verdicts = self.call(env, |store| {
            pre.instantiate(&mut *store)?.call_filter(store, &batch)
        })?;
        if verdicts.len() != points.len() {
            return Err(self.error(CallErrorKind::BadOutput(format!(
                "returned {} verdicts for {} points",
                verdicts.len(),
                points.len()
            ))));
        }
        Ok(verdicts)
    }

    /// Runs a transform over `points`: the points that replace them, tags sorted.
    ///
    /// # Errors
    /// A [`CallError`] when the plugin fails, or returns a point without fields.
    pub fn transform(&self, points: &[Point], env: &CallEnv) -> Result<Vec<Point>, CallError> {
        let Entry::Transform(pre) = &self.entry else {
            return Err(self.wrong_world(World::Transform));
        };
        let batch = encode(points);
        let out = self.call(env, |store| {
            pre.instantiate(&mut *store)?.call_transform(store, &batch)
        })?;
        let mut out: Vec<Point> = out.into_iter().map(Point::from).collect();
        for (i, point) in out.iter_mut().enumerate() {
            if point.fields.is_empty() || point.measurement.is_empty() {
                return Err(self.error(CallErrorKind::BadOutput(format!(
                    "output point {i} has no measurement or no field"
                ))));
            }
            point.sort_tags();
        }
        Ok(out)
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
        let Entry::Alert(pre) = &self.entry else {
            return Err(self.wrong_world(World::Alert));
        };
        let windows: Vec<_> = windows.iter().cloned().map(Into::into).collect();
        let alerts = self.call(env, |store| {
            pre.instantiate(&mut *store)?.call_evaluate(store, &windows)
        })?;
        Ok(alerts.into_iter().map(Alert::from).collect())
    }

    /// One bounded call: fresh store, memory cap, deadline; state committed on success.
    fn call<R>(
        &self,
        env: &CallEnv,
        run: impl FnOnce(&mut Store<PluginCtx>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<R, CallError> {
        let _permit = self.runtime.permits.acquire();
        let ctx = PluginCtx::new(self.id.clone(), env.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.runtime.engine, ctx);
        store.limiter(|ctx| &mut ctx.memory);
        let ticks = self
            .limits
            .timeout
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos());
        // One extra tick: the next tick may come at once, so N ticks guarantee only N-1 full
        // periods.
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1));
        let started = Instant::now();
        let result = run(&mut store);
        store.data().flush_stdio();
        match result {
            Ok(Ok(value)) => {
                store.into_data().state.commit();
                Ok(value)
            }
            Ok(Err(rejected)) => Err(self.error(CallErrorKind::Rejected {
                message: rejected.message,
                index: rejected.index,
            })),
            Err(error) => Err(self.error(self.classify(&error, store.data(), started))),
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
        let stderr = ctx.stderr.contents();
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
