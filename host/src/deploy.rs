//! Tenants deploy their own plugins: `PUT` of a component's bytes, compiled in the
//! background and swapped in between two batches once it loads; its versions listed; an
//! earlier one rolled back to. A tenant's plugins are its own: no other tenant sees, uses
//! or replaces them. The plugin directory stays the library every tenant may use.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::{ApiError, authenticate};
use crate::registry::{DeployTicket, Deployment, PluginsView, Registry, RegistryError};

/// What the deploy routes need.
pub struct DeployState {
    /// The tenants, their plugins, and who a token is.
    pub registry: Arc<Registry>,
    /// The largest component taken.
    pub max_plugin_bytes: usize,
}

/// The deploy routes of the tenant API.
pub fn routes(state: Arc<DeployState>) -> Router {
    Router::new()
        .route("/api/v1/plugins", get(list))
        .route("/api/v1/plugins/{name}", put(deploy))
        .route("/api/v1/plugins/{name}/versions/{version}", get(version))
        .route("/api/v1/plugins/{name}/rollback", post(rollback))
        .with_state(state)
}

/// A registry refusal as the tenant API answers it.
pub fn api_error(error: RegistryError) -> ApiError {
    match error {
        RegistryError::Storage(detail) => ApiError::Unavailable {
            what: "tenant registry",
            detail,
        },
        // The token was the tenant's a moment ago: it is no more.
        RegistryError::NoTenant(_) => ApiError::Unauthorized,
        other => ApiError::invalid(other.to_string()),
    }
}

/// Runs a registry call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Unavailable {
            what: "tenant registry",
            detail: e.to_string(),
        })?
        .map_err(api_error)
}

/// Deploys `bytes` as `tenant`'s plugin `name`: 202 while it compiles, 200 when it is the
/// serving version already.
///
/// # Errors
/// A component over `max` bytes, or what the registry refuses.
pub async fn start(
    registry: Arc<Registry>,
    by: String,
    tenant: String,
    name: String,
    bytes: Bytes,
    max: usize,
) -> Result<(StatusCode, Json<DeployTicket>), ApiError> {
    if bytes.len() > max {
        return Err(ApiError::TooLarge { limit: max });
    }
    let ticket = blocking(move || registry.deploy_plugin(&by, &tenant, &name, &bytes)).await?;
    let status = match ticket.state {
        Deployment::Compiling => StatusCode::ACCEPTED,
        Deployment::Deployed | Deployment::Failed { .. } => StatusCode::OK,
    };
    Ok((status, Json(ticket)))
}

/// The version to roll back to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// A version deployed before.
    pub version: String,
}

/// Rolls `tenant`'s plugin `name` back to the version `json` names.
///
/// # Errors
/// A malformed body, or what the registry refuses.
pub async fn roll_back(
    registry: Arc<Registry>,
    by: String,
    tenant: String,
    name: String,
    json: Result<Json<Rollback>, JsonRejection>,
) -> Result<Json<PluginsView>, ApiError> {
    let Json(rollback) = json.map_err(|e| ApiError::invalid(e.body_text()))?;
    blocking(move || {
        registry.rollback_plugin(&by, &tenant, &name, &rollback.version)?;
        registry.plugins(&tenant)
    })
    .await
    .map(Json)
}

/// Where `tenant`'s deployment of `name`@`version` stands.
///
/// # Errors
/// When there is no such deployment.
pub fn deployment(
    registry: &Registry,
    tenant: &str,
    name: &str,
    version: &str,
) -> Result<Json<DeployTicket>, ApiError> {
    let state = registry.deployment(tenant, name, version).ok_or_else(|| {
        ApiError::invalid(format!(
            "plugin `{name}`: no deployment of version `{version}`"
        ))
    })?;
    Ok(Json(DeployTicket {
        plugin: name.to_owned(),
        version: version.to_owned(),
        state,
    }))
}

async fn list(
    State(state): State<Arc<DeployState>>,
    headers: HeaderMap,
) -> Result<Json<PluginsView>, ApiError> {
    let tenant = authenticate(state.registry.as_ref(), &headers, None)?;
    state
        .registry
        .plugins(tenant.as_str())
        .map(Json)
        .map_err(api_error)
}

async fn deploy(
    State(state): State<Arc<DeployState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<DeployTicket>), ApiError> {
    let tenant = authenticate(state.registry.as_ref(), &headers, None)?;
    let by = format!("tenant {tenant}");
    start(
        state.registry.clone(),
        by,
        tenant.to_string(),
        name,
        bytes,
        state.max_plugin_bytes,
    )
    .await
}

async fn version(
    State(state): State<Arc<DeployState>>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<DeployTicket>, ApiError> {
    let tenant = authenticate(state.registry.as_ref(), &headers, None)?;
    deployment(&state.registry, tenant.as_str(), &name, &version)
}

async fn rollback(
    State(state): State<Arc<DeployState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Result<Json<Rollback>, JsonRejection>,
) -> Result<Json<PluginsView>, ApiError> {
    let tenant = authenticate(state.registry.as_ref(), &headers, None)?;
    let by = format!("tenant {tenant}");
    roll_back(state.registry.clone(), by, tenant.to_string(), name, json).await
}
