//! Wiring: builds the transport, store, plugin registry, pipelines and HTTP API from a
//! [`Config`], runs them, and shuts them down in order.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use tower::ServiceBuilder;

use crate::aggregate::Function;
use crate::api::request_span;
use crate::config::{Config, StoreConfig, TransportConfig};
use crate::ingest::{self, FieldTypes, IngestState};
use crate::lookup::LookupTables;
use crate::ops::{self, OpsState};
use crate::pipeline::{
    AlertRule, AlertStage, DeadLetterLog, PartitionHealth, Pipelines, RuleSink, Runner,
    RunnerParts, Stage, TenantPipeline, Watermarks, Webhook,
};
use crate::plugin::{
    CallEnv, Params, PluginLimits, PluginRegistry, RegistryConfig, Runtime, RuntimeConfig, Settle,
    StageState, World, watch,
};
use crate::query::{self, QueryState, TierInfo};
use crate::quota::Quotas;
use crate::server::{self, BodyBudget};
use crate::store::{EmbeddedStore, Retention, ScyllaStore, Store};
use crate::telemetry::Metrics;
use crate::tenant::{TenantId, Tokens};
use crate::transport::kafka::{self, KafkaConsumer, KafkaProducer, KafkaStates, Topics};
use crate::transport::{EmbeddedLog, GroupConsumer, Outbox, Producer, StateLog};
use crate::window::{RollupRule, WindowSettings};

/// Longest wait at startup for the pipeline to replay the log's unprocessed tail.
const REPLAY_WAIT: Duration = Duration::from_secs(60);

/// Longest wait at shutdown for appends in flight to be confirmed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// Runs the service until `shutdown` resolves; `ready` receives the bound address once the
/// API accepts requests.
///
/// # Errors
/// When a part can't start (data directory, plugins named by stages, listener).
pub async fn run(
    config: Config,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
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
    // one machine, alone where ScyllaDB holds the points (Kafka has its own changelog).
    let (store, store_states): (Arc<dyn Store>, Option<Arc<dyn StateLog>>) = match &config.store {
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
            let states = match store_states {
                Some(states) => states,
                None => open_embedded()? as Arc<dyn StateLog>,
            };
            (log as Arc<dyn Producer>, consumer, states, None)
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

    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: Some(data.join("plugin-cache")),
        ..RuntimeConfig::default()
    })?;
    let limits = |timeout_ms: u64, memory_mib: usize| PluginLimits {
        timeout: Duration::from_millis(timeout_ms),
        memory_bytes: memory_mib << 20,
    };
    let p = &config.plugins;
    let registry = PluginRegistry::open(
        runtime,
        RegistryConfig {
            dir: p.dir.clone(),
            default_limits: limits(p.timeout_ms, p.memory_mib),
            limits: p
                .limits
                .iter()
                .map(|(name, l)| {
                    (
                        name.clone(),
                        limits(
                            l.timeout_ms.unwrap_or(p.timeout_ms),
                            l.memory_mib.unwrap_or(p.memory_mib),
                        ),
                    )
                })
                .collect(),
            quarantine_after: p.quarantine_after,
        },
        metrics.clone(),
    )
    .with_context(|| format!("plugin directory {}", p.dir.display()))?;
    let _watcher =
        watch(registry.clone(), Settle::default()).context("watching the plugin directory")?;

    let mut lookups = LookupTables::default();
    for (name, path) in &config.lookups {
        lookups.load_csv(name, path)?;
    }
    let lookups = Arc::new(lookups);
    let mut dead_letters = DeadLetterLog::open(&data.join("dead-letters.jsonl"), metrics.clone())?;
    if let Some(outbox) = &outbox {
        dead_letters = dead_letters.with_outbox(outbox.clone());
    }
    let dead_letters = Arc::new(dead_letters);

    let mut tokens = Tokens::default();
    let quotas = Arc::new(Quotas::default());
    let mut pipelines = Pipelines::default();
    let mut retention = HashMap::new();
    let mut tiers = HashMap::new();
    let mut retyping = HashSet::new();
    for tenant in &config.tenants {
        let id = TenantId::new(&tenant.name);
        for token in &tenant.tokens {
            tokens.insert(token.expose(), id.clone());
        }
        quotas.set(&id, tenant.limits.or(config.limits));
        retention.insert(
            id.clone(),
            Duration::from_secs(u64::from(tenant.retention_days) * 86_400),
        );
        let mut stages = Vec::new();
        for stage in &tenant.stages {
            let Some(slot) = registry.get(&stage.plugin) else {
                let why = registry
                    .statuses()
                    .into_iter()
                    .find(|s| s.name == stage.plugin)
                    .and_then(|s| s.load_error)
                    .unwrap_or_else(|| format!("no {}.wasm there", stage.plugin));
                bail!(
                    "tenant `{}`, stage `{}`: plugin `{}` is not loaded from {}: {why}",
                    tenant.name,
                    stage.name,
                    stage.plugin,
                    p.dir.display()
                );
            };
            if slot.current().world() == World::Transform {
                retyping.insert(id.clone());
            }
            let env = CallEnv {
                params: Arc::new(stage.params.clone().into_iter().collect::<Params>()),
                lookups: lookups.clone(),
                state: Arc::new(StageState::default()),
            };
            stages.push(Stage::new(
                &id,
                &stage.name,
                slot,
                env,
                dead_letters.clone(),
            )?);
        }
        let mut rules = Vec::new();
        let mut sinks = Vec::new();
        let tenant_tiers = tenant.tiers().map_err(anyhow::Error::msg)?;
        for rollup in &tenant.rollups {
            // Checked when the config was loaded: each rollup writes a declared tier.
            rules.push(RollupRule::build(rollup).map_err(anyhow::Error::msg)?);
            let kept = tenant_tiers.iter().find(|t| t.name == rollup.tier);
            sinks.push(RuleSink::Tier {
                name: rollup.tier.clone(),
                retention: kept.map_or(Retention::Forever, |t| Retention::For(t.retention)),
            });
        }
        for tier in tenant_tiers {
            let Some(index) = tenant.rollups.iter().position(|r| r.name == tier.rule) else {
                continue;
            };
            tiers
                .entry(id.clone())
                .or_insert_with(Vec::new)
                .push(TierInfo {
                    name: tier.name,
                    rule: rules[index].clone(),
                    retention: tier.retention,
                });
        }
        for rule in &tenant.alerts {
            let Some(slot) = registry.get(&rule.plugin) else {
                bail!(
                    "tenant `{}`, alert `{}`: plugin `{}` is not loaded from {}",
                    tenant.name,
                    rule.name,
                    rule.plugin,
                    p.dir.display()
                );
            };
            let aggregates = if rule.aggregates.is_empty() {
                Function::BASIC.to_vec()
            } else {
                rule.aggregates
                    .iter()
                    .map(|a| a.parse().map_err(anyhow::Error::msg))
                    .collect::<anyhow::Result<_>>()?
            };
            let env = CallEnv {
                params: Arc::new(rule.params.clone().into_iter().collect::<Params>()),
                lookups: lookups.clone(),
                state: Arc::new(StageState::default()),
            };
            rules.push(RollupRule::for_alert(
                &rule.name,
                &rule.measurement,
                &rule.field,
                secs(rule.window_secs),
                secs(rule.grace_secs),
                aggregates,
            ));
            sinks.push(RuleSink::Alert(Box::new(AlertRule {
                stage: AlertStage::new(&id, &rule.name, slot, env, dead_letters.clone())?,
                webhook: rule
                    .webhook_url
                    .as_deref()
                    .map(|url| Webhook::new(url, tokio::runtime::Handle::current()))
                    .transpose()?,
            })));
        }
        let windows = (!rules.is_empty()).then(|| WindowSettings {
            rules: rules.into(),
            disorder: secs(config.windows.allowed_disorder_secs),
            max_future: secs(config.windows.max_future_secs),
        });
        let kept = Retention::For(retention[&id]);
        pipelines.insert(
            id,
            TenantPipeline {
                stages,
                windows,
                sinks,
                retention: kept,
            },
        );
    }
    let tokens = Arc::new(tokens);

    let watermarks = Arc::new(Watermarks::default());
    let partitions = Arc::new(PartitionHealth::new(producer.partitions()));
    let runner = Runner::start(
        RunnerParts {
            store: store.clone(),
            states,
            committer: consumer.committer(),
            pipelines: Arc::new(pipelines),
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
    let usage_task = tokio::spawn(usage_loop(store.clone(), quotas.clone()));

    let server_limits = config.ingest.server_limits();
    let app = Router::new()
        .merge(ingest::routes(Arc::new(IngestState {
            tokens: tokens.clone(),
            producer: producer.clone(),
            max_body_bytes: config.ingest.max_body_bytes,
            max_lag_records: config.ingest.max_lag_records,
            limits: config.ingest.limits(),
            types: FieldTypes::default(),
            store: store.clone(),
            retyping,
            retention,
            metrics: metrics.clone(),
            dead_letters: dead_letters.clone(),
            quotas: quotas.clone(),
        })))
        .merge(query::routes(Arc::new(QueryState {
            dead_letters: dead_letters.clone(),
            tokens,
            store: store.clone(),
            tiers,
            watermarks,
        })))
        .merge(ops::routes(Arc::new(OpsState {
            producer: producer.clone(),
            store: store.clone(),
            registry: registry.clone(),
            partitions,
            metrics: metrics.clone(),
        })))
        // Outermost first: the request span; bodies read into memory (within their own
        // deadline, outside the slots); layer errors turned into responses; refuse at once
        // (503) rather than queue when all processing slots are busy; bound processing time.
        .layer(
            ServiceBuilder::new()
                .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
                .layer(axum::middleware::from_fn_with_state(
                    BodyBudget::new(server_limits),
                    server::buffer_body,
                ))
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .concurrency_limit(config.ingest.max_concurrent_requests)
                .timeout(Duration::from_millis(config.ingest.request_timeout_ms)),
        );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %data.display(), "Sluice is serving.");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    server::serve(listener, app, server_limits, metrics, shutdown).await?;

    tracing::info!("Shutting down: draining the pipeline.");
    retention_task.abort();
    usage_task.abort();
    tokio::task::spawn_blocking(move || {
        runner.stop();
        if let Err(error) = producer.flush(SHUTDOWN_FLUSH) {
            tracing::error!(%error, "Appends still pending at shutdown were not confirmed.");
        }
        producer.close();
    })
    .await?;
    Ok(())
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

/// How often each tenant's stored bytes are measured, for its storage quota.
const USAGE_EVERY: Duration = Duration::from_secs(30);

/// Measures the stored bytes of each tenant with a storage quota, for ingest to refuse
/// writes past it.
async fn usage_loop(store: Arc<dyn Store>, quotas: Arc<Quotas>) {
    let mut tick = tokio::time::interval(USAGE_EVERY);
    loop {
        tick.tick().await;
        for tenant in quotas.tenants_with_storage_quota() {
            let store = store.clone();
            let measured = tokio::task::spawn_blocking({
                let tenant = tenant.clone();
                move || store.stored_bytes(&tenant)
            })
            .await;
            match measured {
                Ok(Ok(Some(bytes))) => quotas.stored(&tenant, bytes),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::error!(%tenant, %error, "Could not measure the tenant's stored bytes.");
                }
                Err(error) => tracing::error!(%error, "Measuring stored bytes failed."),
            }
        }
    }
}

/// `s` seconds in nanoseconds, saturating.
fn secs(s: u64) -> crate::point::Nanos {
    i64::try_from(s.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}
