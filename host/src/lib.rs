//! Sluice: a telemetry pipeline engine whose user logic runs as WebAssembly components.
//!
//! The host does the generic, heavy work (ingest, transport, windowing state, storage); the
//! logic that differs per user (filter, transform, alert) ships as components implementing
//! the WIT package in `wit/`. Data flows one way: `point` (the data model) is used by
//! `plugin` (the component runtime and its registry), which is used by `pipeline` (stages
//! that run plugins over batches). `ingest` appends to the `transport`; the `pipeline`
//! runner moves records from the transport through the stages into the `store`; `query`
//! reads the store. `service` wires them from a `config`.

pub mod admin;
pub mod aggregate;
pub mod api;
pub mod columns;
pub mod compactor;
pub mod config;
pub mod cores;
pub mod deploy;
pub mod format;
#[cfg(test)]
mod fuzz;
pub mod ingest;
pub mod lineproto;
pub mod lookup;
pub mod ops;
pub mod pipeline;
pub mod plugin;
pub mod point;
pub mod promql;
pub mod query;
pub mod quota;
pub mod registry;
pub mod search;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod time;
pub mod transport;
mod varint;
pub mod window;
