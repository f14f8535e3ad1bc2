//! Operations endpoints: `GET /health` and `GET /metrics` (Prometheus text). Neither needs a
//! token; neither shows tenant data (plugin names and versions are the operator's; series
//! that name a tenant are only on the admin API's `GET /admin/v1/metrics`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::pipeline::PartitionHealth;
use crate::plugin::{Health, PluginRegistry};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::transport::Producer;

/// What the ops routes need.
pub struct OpsState {
    /// The transport, for its health.
    pub producer: Arc<dyn Producer>,
    /// The store, for its health.
    pub store: Arc<dyn Store>,
    /// Plugin statuses.
    pub registry: Arc<PluginRegistry>,
    /// Panics caught on the pipeline's partitions.
    pub partitions: Arc<PartitionHealth>,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
}

/// The ops routes.
pub fn routes(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while serving: transport, store and plugins were up before the listener opened.
/// `degraded` when a plugin is quarantined or its latest file failed to load, a
/// partition's processing panicked (`partitions` names it, with the panic), or the
/// transport or store has trouble that may pass (`transport`: Kafka brokers unreachable;
/// `store`: ScyllaDB requests failing). 503 `failed`
/// when the transport or store can't work until a restart (a full disk, say): the signal
/// for a supervisor to restart the process once there is room.
async fn health(State(state): State<Arc<OpsState>>) -> impl IntoResponse {
    let transport = state.producer.failure();
    let store = state.store.failure();
    if transport.is_some() || store.is_some() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "failed", "transport": transport, "store": store })),
        );
    }
    let plugins = state.registry.statuses();
    let partitions = state.partitions.troubled();
    let trouble = state.producer.trouble();
    let store_trouble = state.store.trouble();
    let degraded = !partitions.is_empty()
        || trouble.is_some()
        || store_trouble.is_some()
        || plugins.iter().any(|p| {
            p.load_error.is_some() || matches!(p.health, Some(Health::Quarantined { .. }))
        });
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "transport": trouble,
            "store": store_trouble,
            "plugins": plugins,
            "partitions": partitions,
        })),
    )
}

async fn metrics(State(state): State<Arc<OpsState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render_public(),
    )
}
