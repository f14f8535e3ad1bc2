//! `sluice-guest`: write Sluice plugins in plain Rust.
//!
//! A plugin is a WebAssembly component implementing one world of the WIT package
//! `sluice:plugin@0.1.0`: `filter`, `transform` or `alert`. Implement [`Filter`],
//! [`Transform`] or [`Alert`] for a type, then export it with [`export_filter!`],
//! [`export_transform!`] or [`export_alert!`]. The host calls the plugin once per batch;
//! `new` runs once per batch (read parameters there), then the per-point (or per-window)
//! method runs for each item, unless you override the batch method.
//!
//! ```ignore
//! use sluice_guest::{export_filter, Filter, PluginError, PointView};
//!
//! struct DropDebug;
//!
//! impl Filter for DropDebug {
//!     fn new() -> Result<Self, PluginError> { Ok(DropDebug) }
//!     fn keep(&mut self, point: &PointView<'_>) -> bool { point.measurement() != "debug" }
//! }
//!
//! export_filter!(DropDebug);
//! ```

#![deny(missing_docs)]

pub mod log;
pub mod lookup;
pub mod params;
mod point;
pub mod state;
mod view;

/// Bindings generated from the WIT package, one module per world. The shared interfaces are
/// generated once, in `filter`, and reused by the other two.
#[doc(hidden)]
pub mod bindings {
    #![allow(missing_docs)]

    pub mod filter {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sluice:plugin/filter@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_filter_world",
            default_bindings_module: "sluice_guest::bindings::filter",
            additional_derives: [PartialEq],
        });
    }

    pub mod transform {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sluice:plugin/transform@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_transform_world",
            default_bindings_module: "sluice_guest::bindings::transform",
            with: {
                "sluice:plugin/types@0.1.0": super::filter::sluice::plugin::types,
                "sluice:plugin/log@0.1.0": super::filter::sluice::plugin::log,
                "sluice:plugin/params@0.1.0": super::filter::sluice::plugin::params,
                "sluice:plugin/lookup@0.1.0": super::filter::sluice::plugin::lookup,
                "sluice:plugin/state@0.1.0": super::filter::sluice::plugin::state,
            },
        });
    }

    pub mod alert {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sluice:plugin/alert@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_alert_world",
            default_bindings_module: "sluice_guest::bindings::alert",
            with: {
                "sluice:plugin/types@0.1.0": super::filter::sluice::plugin::types,
                "sluice:plugin/log@0.1.0": super::filter::sluice::plugin::log,
                "sluice:plugin/params@0.1.0": super::filter::sluice::plugin::params,
                "sluice:plugin/lookup@0.1.0": super::filter::sluice::plugin::lookup,
                "sluice:plugin/state@0.1.0": super::filter::sluice::plugin::state,
            },
        });
    }

    pub use filter::sluice::plugin as iface;
}

pub use bindings::iface::types::{
    Aggregate, Alert as AlertEvent, AlertState, Batch, Field, FieldValue, Nanos, PluginError,
    Point, Series, Tag, WindowResult,
};
pub use view::{FieldRef, PointView};

/// A filter plugin: keeps or drops each point.
pub trait Filter: Sized {
    /// Builds the filter for one batch, typically from [`params`].
    ///
    /// # Errors
    /// A [`PluginError`] (bad parameters, say): the whole batch fails.
    fn new() -> Result<Self, PluginError>;

    /// True keeps `point` (a view into the batch: nothing is copied).
    fn keep(&mut self, point: &PointView<'_>) -> bool;

    /// One verdict per point; override to look at the batch as a whole.
    ///
    /// # Errors
    /// A [`PluginError`] fails the whole batch.
    fn filter(&mut self, batch: &Batch) -> Result<Vec<bool>, PluginError> {
        Ok(batch.points().map(|p| self.keep(&p)).collect())
    }
}

/// A transform plugin: zero or more points out per point in.
pub trait Transform: Sized {
    /// Builds the transform for one batch, typically from [`params`].
    ///
    /// # Errors
    /// A [`PluginError`] (bad parameters, say): the whole batch fails.
    fn new() -> Result<Self, PluginError>;

    /// Pushes the points that replace `point` onto `out` (none drops it).
    ///
    /// # Errors
    /// A [`PluginError`] fails the whole batch.
    fn transform(&mut self, point: Point, out: &mut Vec<Point>) -> Result<(), PluginError>;

    /// The points that replace the batch; override to work on the batch as a whole
    /// (without copying points out of it, say).
    ///
    /// # Errors
    /// A [`PluginError`] fails the whole batch; per-point errors get the point's index.
    fn transform_batch(&mut self, batch: &Batch) -> Result<Vec<Point>, PluginError> {
        let mut out = Vec::with_capacity(batch.len());
        for (i, point) in batch.points().enumerate() {
            self.transform(point.to_point(), &mut out).map_err(|mut e| {
                e.index = e.index.or(u32::try_from(i).ok());
                e
            })?;
        }
        Ok(out)
    }
}

/// An alert plugin: closed windows in, alerts (state changes) out.
pub trait Alert: Sized {
    /// Builds the evaluator for one batch, typically from [`params`].
    ///
    /// # Errors
    /// A [`PluginError`] (bad parameters, say): the whole batch fails.
    fn new() -> Result<Self, PluginError>;

    /// The alert `window` raises, if its state changes.
    fn evaluate(&mut self, window: &WindowResult) -> Option<AlertEvent>;

    /// The alerts of the batch; override to look at windows together.
    ///
    /// # Errors
    /// A [`PluginError`] fails the whole batch.
    fn evaluate_batch(&mut self, windows: &[WindowResult]) -> Result<Vec<AlertEvent>, PluginError> {
        Ok(windows.iter().filter_map(|w| self.evaluate(w)).collect())
    }
}

/// Exports a [`Filter`] implementation as the plugin's `filter` world.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        const _: () = {
            struct Exported;
            impl $crate::bindings::filter::Guest for Exported {
                fn filter(
                    batch: $crate::Batch,
                ) -> ::std::result::Result<::std::vec::Vec<bool>, $crate::PluginError> {
                    <$plugin as $crate::Filter>::new()?.filter(&batch)
                }
            }
            $crate::bindings::filter::__export_filter_world!(Exported with_types_in $crate::bindings::filter);
        };
    };
}

/// Exports a [`Transform`] implementation as the plugin's `transform` world.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        const _: () = {
            struct Exported;
            impl $crate::bindings::transform::Guest for Exported {
                fn transform(
                    batch: $crate::Batch,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Point>, $crate::PluginError> {
                    <$plugin as $crate::Transform>::new()?.transform_batch(&batch)
                }
            }
            $crate::bindings::transform::__export_transform_world!(Exported with_types_in $crate::bindings::transform);
        };
    };
}

/// Exports an [`Alert`] implementation as the plugin's `alert` world.
#[macro_export]
macro_rules! export_alert {
    ($plugin:ty) => {
        const _: () = {
            struct Exported;
            impl $crate::bindings::alert::Guest for Exported {
                fn evaluate(
                    windows: ::std::vec::Vec<$crate::WindowResult>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::AlertEvent>, $crate::PluginError> {
                    <$plugin as $crate::Alert>::new()?.evaluate_batch(&windows)
                }
            }
            $crate::bindings::alert::__export_alert_world!(Exported with_types_in $crate::bindings::alert);
        };
    };
}
