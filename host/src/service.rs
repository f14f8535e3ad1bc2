//! Wiring: builds the transport, store, plugin registry, pipelines and HTTP API from a
//! [`Config`], runs them, and shuts them down in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use tower::ServiceBuilder;

use crate::admin::{self, AdminState, AdminTokens};
use crate::api::request_span;
use crate::compactor::Compactor;
use crate::config::{Config, StoreConfig, TransportConfig};
use crate::deploy::{self, DeployState};
use crate::ingest::{self, FieldTypes, IngestState};
use crate::lookup::LookupTables;
use crate::ops::{self, OpsState};
use crate::pipeline::{
    DeadLetterLog, PartitionHealth, PipelinesCell, Runner, RunnerParts, Watermarks,
};
use crate::plugin::{
    PluginLimits, PluginRegistry, RegistryConfig, Runtime, RuntimeConfig, Settle, watch,
};
use crate::query::{self, QueryState};
use crate::quota::Quotas;
use crate::registry::{Builder, Registry, TenantStore};
use crate::server::{self, BodyBudget};
use crate::store::{EmbeddedStore, ScyllaStore, Store};
use crate::telemetry::Metrics;
use crate::tenant::TenantId;
use crate::time::secs;
use crate::transport::kafka::{self, KafkaConsumer, KafkaProducer, KafkaStates, Topics};
use crate::transport::{EmbeddedLog, GroupConsumer, Outbox, Producer, StateLog};

/// Where the service listens, once it does.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The API: ingest, queries, health.
    pub api: SocketAddr,
    /// The admin API.
    pub admin: SocketAddr,
}

/// Longest wait at startup for the pipeline to replay the log's unprocessed tail.
const REPLAY_WAIT: Duration = Duration::from_secs(60);

/// Longest wait at shutdown for appends in flight to be confirmed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// The plugin runtime and registry settings of `config`: the service and `sluice plugin`
/// run plugins under the same limits and share the artifact cache.
pub fn plugin_settings(config: &Config) -> (RuntimeConfig, RegistryConfig) {
    let limits = |timeout_ms: u64, memory_mib: usize| PluginLimits {
        timeout: Duration::from_millis(timeout_ms),
        memory_bytes: memory_mib << 20,
    };
    let p = &config.plugins;
    let runtime = RuntimeConfig {
        cache_dir: Some(config.data_dir.join("plugin-cache")),
        cache_max_bytes: p.cache_max_mib << 20,
        baseline_from_bytes: usize::try_from(p.baseline_from_mib)
            .ok()
            .and_then(|mib| mib.checked_mul(1 << 20))
            .unwrap_or(usize::MAX),
        ..RuntimeConfig::default()
    };
    let registry = RegistryConfig {
        dir: p.dir.clone(),
        default_limits: limits(p.timeout_ms, p.memory_mib),
        limits: p
            .limits
            .iter()
            .map(|(name, l)| {
                let limits = limits(
                    l.timeout_ms.unwrap_or(p.timeout_ms),
                    l.memory_mib.unwrap_or(p.memory_mib),
                );
                (name.clone(), limits)
            })
            .collect(),
        quarantine_after: p.quarantine_after,
    };
    (runtime, registry)
}

/// Runs the service until `shutdown` resolves; `ready` receives the bound address once the
/// API accepts requests.
///
/// # Errors
/// When a part can't start (data directory, plugins named by stages, listener).
pub async fn run(
    config: Config,
    ready: Option<tokio::sync::oneshot::Sender<Bound>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data = config.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("data directory {}", data.display()))?;
    let metrics = Arc::new(Metrics::default());

    let open_embedded = || {
        EmbeddedStore::open(&data.join("store"))
            .map(Arc::new)
            .context("opening the embedded store")
    };
    // The embedded log keeps partition states in the embedded store: beside the points on
    // one machine, alone where ScyllaDB holds the points (Kafka has its own changelog). The
    // tenant registry is kept there too.
    let (store, mut local): (Arc<dyn Store>, Option<Arc<EmbeddedStore>>) = match &config.store {
        StoreConfig::Embedded => {
            let store = open_embedded()?;
            (store.clone(), Some(store))
        }
        StoreConfig::Scylla(scylla) => {
            let nodes = scylla.nodes.join(",");
            let connect = scylla.clone();
            let store = tokio::task::spawn_blocking(move || ScyllaStore::connect(&connect))
                .await?
                .with_context(|| format!("connecting to ScyllaDB at {nodes}"))?;
            tracing::info!(%nodes, keyspace = %scylla.keyspace, "Storing in ScyllaDB.");
            (Arc::new(store), None)
        }
    };
    let (producer, consumer, states, outbox) = match &config.transport {
        TransportConfig::Embedded { partitions } => {
            let log = EmbeddedLog::open(&data.join("log"), *partitions)
                .context("opening the embedded log")?;
            let consumer: Box<dyn GroupConsumer> = Box::new(log.consumer());
            let states = match &local {
                Some(states) => states.clone(),
                None => {
                    let states = open_embedded()?;
                    local = Some(states.clone());
                    states
                }
            };
            (
                log as Arc<dyn Producer>,
                consumer,
                states as Arc<dyn StateLog>,
                None,
            )
        }
        TransportConfig::Kafka(kafka) => {
            let topics = Topics::new(&kafka.topic_prefix);
            kafka::ensure_topics(kafka, &topics)
                .await
                .with_context(|| format!("preparing the Kafka topics on {}", kafka.brokers))?;
            let producer = KafkaProducer::new(kafka, &topics, metrics.clone())?;
            let states: Arc<dyn StateLog> =
                Arc::new(KafkaStates::new(kafka, &topics, producer.clone())?);
            let consumer: Box<dyn GroupConsumer> = Box::new(KafkaConsumer::new(kafka, &topics)?);
            tracing::info!(brokers = %kafka.brokers, group = %kafka.group, topics = %topics.points, "Joining the Kafka consumer group.");
            let outbox: Arc<dyn Outbox> = producer.clone();
            (
                producer as Arc<dyn Producer>,
                consumer,
                states,
                Some(outbox),
            )
        }
    };

    let (runtime_config, registry_config) = plugin_settings(&config);
    let runtime = Runtime::new(&runtime_config)?;
    let plugins = PluginRegistry::open(runtime, registry_config, metrics.clone())
        .with_context(|| format!("plugin directory {}", config.plugins.dir.display()))?;
    let _watcher =
        watch(plugins.clone(), Settle::default()).context("watching the plugin directory")?;

    let mut lookups = LookupTables::default();
    for (name, path) in &config.lookups {
        lookups.load_csv(name, path)?;
    }
    let mut dead_letters = DeadLetterLog::open(&data.join("dead-letters.jsonl"), metrics.clone())?;
    if let Some(outbox) = &outbox {
        dead_letters = dead_letters.with_outbox(outbox.clone());
    }
    let dead_letters = Arc::new(dead_letters);

    let quotas = Arc::new(Quotas::default());
    let pipelines = Arc::new(PipelinesCell::default());
    let records: Arc<dyn TenantStore> = match local {
        Some(local) => local,
        None => {
            tracing::warn!(
                "The tenant registry is kept in this process's data directory: each process of a Kafka group keeps its own."
            );
            open_embedded()?
        }
    };
    let tenants = Arc::new(
        Registry::open(
            records,
            Builder {
                plugins: plugins.clone(),
                dead_letters: dead_letters.clone(),
                lookups,
                disorder: secs(config.windows.allowed_disorder_secs),
                max_future: secs(config.windows.max_future_secs),
                runtime: tokio::runtime::Handle::current(),
                owned_plugins: data.join("tenant-plugins"),
            },
            pipelines.clone(),
            quotas.clone(),
            config.limits,
            &config.tenants,
        )
        .context("opening the tenant registry")?,
    );

    let watermarks = Arc::new(Watermarks::default());
    let partitions = Arc::new(PartitionHealth::new(producer.partitions()));
    let runner = Runner::start(
        RunnerParts {
            store: store.clone(),
            states,
            committer: consumer.committer(),
            pipelines,
            dead_letters: dead_letters.clone(),
            health: partitions.clone(),
            idle_after: Duration::from_secs(config.windows.idle_after_secs),
            metrics: metrics.clone(),
            watermarks: watermarks.clone(),
            outbox,
            quotas: quotas.clone(),
        },
        consumer,
    )?;
    // Serve once the partitions' unprocessed tail (a crash's replay, at most about
    // `max_lag_records` a partition) is in the store: queries then see every acknowledged
    // point, and type checks at ingest see every stored type.
    let replay_deadline = tokio::time::Instant::now() + REPLAY_WAIT;
    while !runner.caught_up() {
        if tokio::time::Instant::now() >= replay_deadline {
            tracing::warn!("The log's tail is still being replayed; serving meanwhile.");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retention_task = tokio::spawn(expire_loop(
        store.clone(),
        Duration::from_secs(config.retention_interval_secs),
    ));
    let usage_task = tokio::spawn(usage_loop(
        store.clone(),
        quotas.clone(),
        metrics.clone(),
        config.data_dir.clone(),
    ));
    let compactor = Compactor::start(
        store.clone(),
        config.compaction_mib_per_sec.saturating_mul(1 << 20),
        metrics.clone(),
    )
    .context("starting the compaction thread")?;

    let server_limits = config.ingest.server_limits();
    let app = Router::new()
        .merge(ingest::routes(Arc::new(IngestState {
            tenants: tenants.clone(),
            producer: producer.clone(),
            max_body_bytes: config.ingest.max_body_bytes,
            max_lag_records: config.ingest.max_lag_records,
            limits: config.ingest.limits(),
            types: FieldTypes::default(),
            store: store.clone(),
            metrics: metrics.clone(),
            dead_letters: dead_letters.clone(),
            quotas: quotas.clone(),
        })))
        .merge(query::routes(Arc::new(QueryState {
            dead_letters: dead_letters.clone(),
            tenants: tenants.clone(),
            store: store.clone(),
            watermarks,
        })))
        .merge(deploy::routes(Arc::new(DeployState {
            registry: tenants.clone(),
            max_plugin_bytes: config.plugins.max_upload_bytes,
        })))
        .merge(ops::routes(Arc::new(OpsState {
            producer: producer.clone(),
            store: store.clone(),
            registry: plugins.clone(),
            partitions,
            metrics: metrics.clone(),
        })));
    let app = bounded(
        app,
        server_limits,
        config.ingest.max_concurrent_requests,
        config.ingest.request_timeout_ms,
    );

    let admin_app = admin::routes(Arc::new(AdminState {
        registry: tenants.clone(),
        tokens: AdminTokens::new(
            config
                .admin
                .tokens
                .iter()
                .map(|t| (t.name.as_str(), &t.token)),
        ),
        metrics: metrics.clone(),
        max_plugin_bytes: config.plugins.max_upload_bytes,
    }));
    // Its own processing slots: a flood of the API can't keep an operator out.
    let admin_app = bounded(
        admin_app,
        server_limits,
        ADMIN_CONCURRENT_REQUESTS,
        config.ingest.request_timeout_ms,
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("listening on {} (admin.listen)", config.admin.listen))?;
    let bound = Bound {
        api: listener.local_addr()?,
        admin: admin_listener.local_addr()?,
    };
    tracing::info!(addr = %bound.api, admin = %bound.admin, data_dir = %data.display(), "Sluice is serving.");
    if config.admin.tokens.is_empty() {
        tracing::warn!(
            "No admin tokens are configured ([[admin.tokens]]): the admin API refuses every call."
        );
    }
    if let Some(ready) = ready {
        let _ = ready.send(bound);
    }
    // One shutdown for both listeners.
    let shutdown = futures_util::FutureExt::shared(Box::pin(shutdown));
    let admin_server = tokio::spawn(server::serve(
        admin_listener,
        admin_app,
        server_limits,
        metrics.clone(),
        shutdown.clone(),
    ));
    server::serve(listener, app, server_limits, metrics, shutdown).await?;
    if let Err(error) = admin_server.await? {
        tracing::error!(%error, "The admin listener failed.");
    }

    tracing::info!("Shutting down: draining the pipeline.");
    retention_task.abort();
    usage_task.abort();
    tokio::task::spawn_blocking(move || {
        compactor.stop();
        runner.stop();
        if let Err(error) = producer.flush(SHUTDOWN_FLUSH) {
            tracing::error!(%error, "Appends still pending at shutdown were not confirmed.");
        }
        producer.close();
    })
    .await?;
    Ok(())
}

/// Requests the admin API processes at once.
const ADMIN_CONCURRENT_REQUESTS: usize = 16;

/// `routes` behind the layers every listener has. Outermost first: the request span;
/// bodies read into memory (within their own deadline, outside the slots); layer errors
/// turned into responses; refuse at once (503) rather than queue when all `slots` are
/// busy; bound processing time.
fn bounded(routes: Router, limits: server::ServerLimits, slots: usize, timeout_ms: u64) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
            .layer(axum::middleware::from_fn_with_state(
                BodyBudget::new(limits),
                server::buffer_body,
            ))
            .layer(HandleErrorLayer::new(layer_error))
            .load_shed()
            .concurrency_limit(slots)
            .timeout(Duration::from_millis(timeout_ms)),
    )
}

async fn layer_error(error: tower::BoxError) -> impl IntoResponse {
    if error.is::<tower::load_shed::error::Overloaded>() {
        let mut response =
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded; retry later").into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    } else if error.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response()
    } else {
        tracing::error!(%error, "Unhandled middleware error.");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    }
}

/// Deletes what is past the retention the writes carried (raw points with their alerts
/// and late data, each rollup tier's windows), where the store doesn't expire rows itself.
async fn expire_loop(store: Arc<dyn Store>, every: Duration) {
    // The first pass one interval after start: a restart doesn't delay serving for it.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let store = store.clone();
        let now = crate::time::now_ns();
        match tokio::task::spawn_blocking(move || store.expire_due(now)).await {
            Ok(Ok(removed)) if removed > 0 => {
                tracing::info!(removed, "Expired data past retention.");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "Retention pass failed."),
            Err(error) => tracing::error!(%error, "Retention task failed."),
        }
    }
}

/// Shortest pause between two measurements of what each tenant stores.
const USAGE_EVERY: Duration = Duration::from_secs(30);

/// A measurement reads every chunk: the pause after one is at least this many times as long
/// as it took, so measuring takes a small share of the disk however big the store grows.
const USAGE_DUTY: u32 = 20;

/// Measures what each tenant stores (raw points and each tier), for storage quotas and
/// the admin metrics, and the bytes on disk under `data_dir`, for the public ones.
async fn usage_loop(
    store: Arc<dyn Store>,
    quotas: Arc<Quotas>,
    metrics: Arc<Metrics>,
    data_dir: std::path::PathBuf,
) {
    loop {
        let started = tokio::time::Instant::now();
        let measured = tokio::task::spawn_blocking({
            let (store, data_dir) = (store.clone(), data_dir.clone());
            move || (store.usage(), crate::telemetry::disk_usage(&data_dir))
        })
        .await;
        match measured {
            Ok((usage, disk)) => {
                match usage {
                    Ok(Some(usage)) => {
                        let mut totals: BTreeMap<&TenantId, u64> = BTreeMap::new();
                        for u in &usage {
                            *totals.entry(&u.tenant).or_default() += u.bytes;
                        }
                        // A tenant whose data all expired stores nothing, not what it did.
                        for tenant in quotas.tenants_with_storage_quota() {
                            quotas.stored(&tenant, totals.get(&tenant).copied().unwrap_or(0));
                        }
                        metrics.stored(&usage);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, "Could not measure what each tenant stores.");
                    }
                }
                metrics.disk(&disk);
            }
            Err(error) => tracing::error!(%error, "Measuring stored bytes failed."),
        }
        let took = started.elapsed();
        tokio::time::sleep(USAGE_EVERY.max(took * USAGE_DUTY)).await;
    }
}
