//! Sluice: a telemetry pipeline engine whose user logic runs as WebAssembly components.
//!
//! The host does the generic, heavy work (ingest, transport, windowing state, storage); the
//! logic that differs per user (filter, transform, alert) ships as components implementing
//! the WIT package in `wit/`. Data flows one way: `point` (the data model) is used by
//! `plugin` (the component runtime and its registry), which is used by `pipeline` (stages
//! that run plugins over batches), which the binary wires to ingest and storage.

pub mod lineproto;
pub mod lookup;
pub mod pipeline;
pub mod plugin;
pub mod point;
pub mod telemetry;
