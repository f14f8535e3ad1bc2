//! `sluice-guest`: write Sluice plugins in plain Rust.
//!
//! A plugin is a WebAssembly component implementing one world of the WIT package
//! `sluice:plugin@0.2.0`: `filter`, `transform` or `alert`. Implement [`Filter`],
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
    // Generated code: the export glue of a `batch` argument takes its flattened fields.
    #![allow(missing_docs, clippy::too_many_arguments)]

    pub mod filter {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sluice:plugin/filter@0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_filter_world",
            default_bindings_module: "sluice_guest::bindings::filter",
            additional_derives: [PartialEq],
            // `point` and its parts cross no function (batches carry points as columns),
            // but they are the SDK's owned point types.
            generate_unused_types: true,
        });
    }

    pub mod transform {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sluice:plugin/transform@0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_transform_world",
            default_bindings_module: "sluice_guest::bindings::transform",
            with: {
                "sluice:plugin/types@0.2.0": super::filter::sluice::plugin::types,
                "sluice:plugin/log@0.2.0": super::filter::sluice::plugin::log,
                "sluice:plugin/params@0.2.0": super::filter::sluice::plugin::params,
                "sluice:plugin/lookup@0.2.0": super::filter::sluice::plugin::lookup,
                "sluice:plugin/state@0.2.0": super::filter::sluice::plugin::state,
            },
        });
    }

    pub mod alert {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sluice:plugin/alert@0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_alert_world",
            default_bindings_module: "sluice_guest::bindings::alert",
            with: {
                "sluice:plugin/types@0.2.0": super::filter::sluice::plugin::types,
                "sluice:plugin/log@0.2.0": super::filter::sluice::plugin::log,
                "sluice:plugin/params@0.2.0": super::filter::sluice::plugin::params,
                "sluice:plugin/lookup@0.2.0": super::filter::sluice::plugin::lookup,
                "sluice:plugin/state@0.2.0": super::filter::sluice::plugin::state,
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
            self.transform(point.to_point(), &mut out)
                .map_err(|mut e| {
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

    /// The alert `window` raises, if its state changes ([`AlertEvent::new`]: the SDK
    /// fills in which window it is).
    fn evaluate(&mut self, window: &WindowResult) -> Option<AlertEvent>;

    /// The alerts of the batch, each naming its window by index; override to look at
    /// windows together.
    ///
    /// # Errors
    /// A [`PluginError`] fails the whole batch.
    fn evaluate_batch(&mut self, windows: &[WindowResult]) -> Result<Vec<AlertEvent>, PluginError> {
        Ok(windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let mut alert = self.evaluate(w)?;
                alert.window = u32::try_from(i).unwrap_or(u32::MAX);
                Some(alert)
            })
            .collect())
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
                ) -> ::std::result::Result<$crate::Batch, $crate::PluginError> {
                    let points = <$plugin as $crate::Transform>::new()?.transform_batch(&batch)?;
                    ::std::result::Result::Ok($crate::Batch::from_points(&points))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps points whose `v` is at most `max`; points without `v` are kept.
    struct MaxV {
        max: f64,
        seen: usize,
    }

    impl Filter for MaxV {
        fn new() -> Result<Self, PluginError> {
            unreachable!("tests build the struct directly")
        }

        fn keep(&mut self, point: &PointView<'_>) -> bool {
            self.seen += 1;
            point
                .field("v")
                .and_then(|v| v.as_f64())
                .is_none_or(|v| v <= self.max)
        }
    }

    /// Per point: `drop` pushes nothing, `twice` pushes two copies, `fail` fails with no
    /// index, `fail-at` fails naming item 7; anything else passes through with tag `seen`.
    struct Script {
        calls: usize,
    }

    impl Transform for Script {
        fn new() -> Result<Self, PluginError> {
            unreachable!("tests build the struct directly")
        }

        fn transform(&mut self, point: Point, out: &mut Vec<Point>) -> Result<(), PluginError> {
            self.calls += 1;
            match point.measurement.as_str() {
                "drop" => {}
                "twice" => {
                    out.push(point.clone());
                    out.push(point);
                }
                "fail" => return Err(PluginError::new("no index")),
                "fail-at" => return Err(PluginError::at(7, "own index")),
                _ => out.push(point.with_tag("seen", "yes")),
            }
            Ok(())
        }
    }

    /// Fires when the window's `max` is above 90 and the series is not already critical.
    struct Above90;

    impl Alert for Above90 {
        fn new() -> Result<Self, PluginError> {
            unreachable!("tests build the struct directly")
        }

        fn evaluate(&mut self, w: &WindowResult) -> Option<AlertEvent> {
            let max = w.aggregates.iter().find(|a| a.name == "max")?.value;
            (max > 90.0 && w.state != AlertState::Critical).then(|| {
                AlertEvent::new(
                    AlertState::Critical,
                    max,
                    format!("{} max {max}", w.series.key()),
                )
            })
        }
    }

    fn point(measurement: &str) -> Point {
        Point::new(measurement, 1).with_field("x", 1i64)
    }

    fn window(host: &str, max: f64, state: AlertState) -> WindowResult {
        WindowResult {
            rule: "hot".into(),
            series: Series {
                measurement: "cpu".into(),
                tags: vec![Tag::new("host", host)],
            },
            field: "usage".into(),
            window_start: 0,
            window_end: 60_000_000_000,
            aggregates: vec![
                Aggregate {
                    name: "mean".into(),
                    value: 50.0,
                },
                Aggregate {
                    name: "max".into(),
                    value: max,
                },
            ],
            state,
        }
    }

    #[test]
    fn filter_gives_one_verdict_per_point_in_order() {
        let batch = Batch::from_points(&[
            Point::new("a", 1).with_field("v", 5.0),
            Point::new("b", 2).with_field("v", 50u64),
            Point::new("c", 3).with_field("other", 1i64),
            Point::new("d", 4).with_field("v", -1i64),
        ]);
        let mut f = MaxV { max: 10.0, seen: 0 };
        assert_eq!(f.filter(&batch), Ok(vec![true, false, true, true]));
        assert_eq!(f.seen, 4);
    }

    #[test]
    fn filter_of_an_empty_batch_is_empty() {
        let mut f = MaxV { max: 0.0, seen: 0 };
        assert_eq!(f.filter(&Batch::from_points(&[])), Ok(vec![]));
        assert_eq!(f.seen, 0);
    }

    #[test]
    fn transform_batch_concatenates_outputs_in_order() {
        let batch = Batch::from_points(&[point("a"), point("drop"), point("twice"), point("b")]);
        let mut t = Script { calls: 0 };
        let out = t.transform_batch(&batch).expect("no error");
        let names: Vec<&str> = out.iter().map(|p| p.measurement.as_str()).collect();
        assert_eq!(names, ["a", "twice", "twice", "b"]);
        assert_eq!(out[0], point("a").with_tag("seen", "yes"));
        assert_eq!(out[1], point("twice"), "points reach transform as sent");
        assert_eq!(t.calls, 4);
    }

    #[test]
    fn transform_batch_of_an_empty_batch_is_empty() {
        let mut t = Script { calls: 0 };
        assert_eq!(t.transform_batch(&Batch::from_points(&[])), Ok(vec![]));
        assert_eq!(t.calls, 0);
    }

    #[test]
    fn transform_error_without_index_gets_the_points_index_and_stops_the_batch() {
        let batch = Batch::from_points(&[point("a"), point("b"), point("fail"), point("c")]);
        let mut t = Script { calls: 0 };
        assert_eq!(
            t.transform_batch(&batch),
            Err(PluginError::at(2, "no index"))
        );
        assert_eq!(
            t.calls, 3,
            "the point after the failing one is not transformed"
        );
    }

    #[test]
    fn transform_error_with_its_own_index_keeps_it() {
        let batch = Batch::from_points(&[point("a"), point("fail-at")]);
        let mut t = Script { calls: 0 };
        assert_eq!(
            t.transform_batch(&batch),
            Err(PluginError::at(7, "own index"))
        );
    }

    #[test]
    fn evaluate_batch_returns_only_the_alerts_raised_in_window_order() {
        let windows = [
            window("a", 95.0, AlertState::Ok),
            window("b", 10.0, AlertState::Ok),
            window("c", 99.0, AlertState::Critical),
            window("d", 91.5, AlertState::Warning),
        ];
        let alerts = Above90.evaluate_batch(&windows).expect("no error");
        let raised_by: Vec<u32> = alerts.iter().map(|a| a.window).collect();
        assert_eq!(raised_by, [0, 3], "windows a and d, by index");
        assert_eq!(alerts[1].value, 91.5);
        assert_eq!(alerts[1].message, "cpu,host=d max 91.5");
        assert_eq!(Above90.evaluate_batch(&[]), Ok(vec![]));
    }
}
