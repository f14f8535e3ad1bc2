//! Integration tests of the `sluice` host, one binary (faster to link on 2 cores).
//!
//! The plugin tests run the real example components from `target/plugins/`, built by
//! `scripts/build-plugins.sh`.

mod cli;
mod common;
mod deploy;
mod examples;
mod failures;
mod grafana;
mod hardening;
mod instances;
mod kafka;
mod kassandra;
mod languages;
mod prometheus;
mod promql;
mod reload;
mod scylla;
mod service;
mod service_util;
mod tansu;
mod tenants;
mod windows;
