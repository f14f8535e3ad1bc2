//! Host bindings generated from the WIT package in `wit/`, one module per world.
//!
//! The three worlds share their interfaces; `with` makes the second and third world reuse
//! the first one's types and import traits, so the host implements each import once.
#![allow(missing_docs)] // generated code

/// The `filter` world, and the shared `sluice:plugin` interfaces.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
    });
}

/// The `transform` world.
pub mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        with: { "sluice:plugin": super::filter::sluice::plugin },
    });
}

/// The `alert` world.
pub mod alert {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "alert",
        with: { "sluice:plugin": super::filter::sluice::plugin },
    });
}

pub use filter::sluice::plugin::{log, lookup, params, state, types};
