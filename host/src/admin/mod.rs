//! The admin API, on a listener of its own (loopback unless configured otherwise) and
//! authenticated by admin tokens, which tenant tokens are not: tenants, their tokens and
//! pipelines, the audit log of every change, and every metric (tenants named). Its
//! OpenAPI document is `openapi.json` beside this file, served at
//! `GET /admin/v1/openapi.json`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::config::PipelineSpec;
use crate::deploy;
use crate::quota::Limits;
use crate::registry::{AuditEntry, NewToken, PluginsView, Registry, RegistryError, TenantSpec};
use crate::telemetry::Metrics;
use crate::tenant::{Secret, digest};

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route, as the OpenAPI document names it (a test checks the two agree).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/admin/v1/tenants"),
    ("post", "/admin/v1/tenants"),
    ("get", "/admin/v1/tenants/{name}"),
    ("patch", "/admin/v1/tenants/{name}"),
    ("delete", "/admin/v1/tenants/{name}"),
    ("post", "/admin/v1/tenants/{name}/tokens"),
    ("delete", "/admin/v1/tenants/{name}/tokens/{id}"),
    ("get", "/admin/v1/tenants/{name}/pipeline"),
    ("put", "/admin/v1/tenants/{name}/pipeline"),
    ("get", "/admin/v1/tenants/{name}/plugins"),
    ("put", "/admin/v1/tenants/{name}/plugins/{plugin}"),
    (
        "get",
        "/admin/v1/tenants/{name}/plugins/{plugin}/versions/{version}",
    ),
    ("post", "/admin/v1/tenants/{name}/plugins/{plugin}/rollback"),
    ("get", "/admin/v1/audit"),
    ("get", "/admin/v1/metrics"),
    ("get", "/admin/v1/openapi.json"),
];

/// Admin token → its name (the `by` of audit entries). Kept as digests, looked up by
/// digest, never logged.
#[derive(Default)]
pub struct AdminTokens {
    by_digest: HashMap<[u8; 32], String>,
}

impl AdminTokens {
    /// The directory of `tokens` (name, token).
    pub fn new<'a>(tokens: impl IntoIterator<Item = (&'a str, &'a Secret)>) -> Self {
        Self {
            by_digest: tokens
                .into_iter()
                .map(|(name, token)| (digest(token.expose()), name.to_owned()))
                .collect(),
        }
    }

    /// The name of the admin a request comes from.
    fn who(&self, headers: &HeaderMap) -> Result<String, AdminError> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("Token "))
            })
            .and_then(|token| self.by_digest.get(&digest(token.trim())))
            .cloned()
            .ok_or(AdminError::Unauthorized {
                configured: !self.by_digest.is_empty(),
            })
    }
}

/// What the admin routes need.
pub struct AdminState {
    /// The tenants.
    pub registry: Arc<Registry>,
    /// Who may call.
    pub tokens: AdminTokens,
    /// Every metric, tenants named.
    pub metrics: Arc<Metrics>,
    /// The largest plugin component taken.
    pub max_plugin_bytes: usize,
}

/// An admin request that failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No admin token, or an unknown one.
    #[error("{}", if *configured { "unauthorized: send `Authorization: Bearer <admin token>`" } else { "unauthorized: no admin tokens are configured (`[[admin.tokens]]`)" })]
    Unauthorized {
        /// Whether any admin token is configured.
        configured: bool,
    },
    /// The body is not what the route takes.
    #[error("{0}")]
    Body(String),
    /// The registry refused, or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::Body(_) | AdminError::Registry(RegistryError::Invalid { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            AdminError::Registry(RegistryError::NoTenant(_) | RegistryError::NoToken { .. }) => {
                (StatusCode::NOT_FOUND, "not found")
            }
            AdminError::Registry(RegistryError::Exists(_)) => (StatusCode::CONFLICT, "conflict"),
            AdminError::Registry(RegistryError::Storage(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        let body = serde_json::json!({ "code": code, "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

/// A JSON body, or a 400 naming what in it is wrong (serde names the field and place).
fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, AdminError> {
    json.map(|Json(t)| t)
        .map_err(|e| AdminError::Body(e.body_text()))
}

/// Runs a registry call off the async threads (it builds pipelines and writes durably).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Storage(e.to_string()))?
        .map_err(AdminError::from)
}

/// The admin routes.
pub fn routes(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/admin/v1/tenants", get(list).post(create))
        .route(
            "/admin/v1/tenants/{name}",
            get(show).patch(update).delete(remove),
        )
        .route("/admin/v1/tenants/{name}/tokens", post(create_token))
        .route(
            "/admin/v1/tenants/{name}/tokens/{id}",
            axum::routing::delete(revoke_token),
        )
        .route(
            "/admin/v1/tenants/{name}/pipeline",
            get(pipeline).put(replace_pipeline),
        )
        .route("/admin/v1/tenants/{name}/plugins", get(plugins))
        .route(
            "/admin/v1/tenants/{name}/plugins/{plugin}",
            axum::routing::put(deploy_plugin),
        )
        .route(
            "/admin/v1/tenants/{name}/plugins/{plugin}/versions/{version}",
            get(plugin_version),
        )
        .route(
            "/admin/v1/tenants/{name}/plugins/{plugin}/rollback",
            post(rollback_plugin),
        )
        .route("/admin/v1/audit", get(audit))
        .route("/admin/v1/metrics", get(metrics))
        .route("/admin/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// A tenant as listed: its tokens by id, never their digests.
#[derive(Serialize)]
struct TenantOut {
    name: String,
    retention_days: u32,
    limits: Limits,
    tokens: Vec<TokenOut>,
    stages: usize,
    alerts: usize,
    rollups: usize,
}

#[derive(Serialize)]
struct TokenOut {
    id: String,
    created: String,
    description: String,
}

impl From<TenantSpec> for TenantOut {
    fn from(spec: TenantSpec) -> Self {
        Self {
            name: spec.name.to_string(),
            retention_days: spec.retention_days,
            limits: spec.limits,
            tokens: spec
                .tokens
                .into_iter()
                .map(|t| TokenOut {
                    id: t.id,
                    created: t.created,
                    description: t.description,
                })
                .collect(),
            stages: spec.pipeline.stages.len(),
            alerts: spec.pipeline.alerts.len(),
            rollups: spec.pipeline.rollups.len(),
        }
    }
}

async fn list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<TenantOut>>, AdminError> {
    state.tokens.who(&headers)?;
    let tenants = state.registry.tenants();
    Ok(Json(tenants.into_iter().map(TenantOut::from).collect()))
}

/// A tenant to create.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default = "default_retention_days")]
    retention_days: u32,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    pipeline: PipelineSpec,
}

const fn default_retention_days() -> u32 {
    30
}

/// A tenant just created, with its first token (shown this once).
#[derive(Serialize)]
struct Created {
    tenant: TenantOut,
    token: NewToken,
}

async fn create(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    json: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), AdminError> {
    let by = state.tokens.who(&headers)?;
    let new = body(json)?;
    let registry = state.registry.clone();
    let (spec, token) = blocking(move || {
        registry.create(&by, &new.name, new.retention_days, new.limits, new.pipeline)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            tenant: spec.into(),
            token,
        }),
    ))
}

async fn show(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<TenantOut>, AdminError> {
    state.tokens.who(&headers)?;
    Ok(Json(state.registry.tenant(&name)?.into()))
}

/// What of a tenant may change besides its pipeline and tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantPatch {
    retention_days: Option<u32>,
    limits: Option<Limits>,
}

async fn update(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Result<Json<TenantPatch>, JsonRejection>,
) -> Result<Json<TenantOut>, AdminError> {
    let by = state.tokens.who(&headers)?;
    let patch = body(json)?;
    let registry = state.registry.clone();
    let spec =
        blocking(move || registry.update(&by, &name, patch.retention_days, patch.limits)).await?;
    Ok(Json(spec.into()))
}

async fn remove(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    let by = state.tokens.who(&headers)?;
    let registry = state.registry.clone();
    blocking(move || registry.delete(&by, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token to create.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    description: String,
}

async fn create_token(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Option<Json<TokenRequest>>,
) -> Result<(StatusCode, Json<NewToken>), AdminError> {
    let by = state.tokens.who(&headers)?;
    let request = json.map(|Json(r)| r).unwrap_or_default();
    let registry = state.registry.clone();
    let token = blocking(move || registry.create_token(&by, &name, &request.description)).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

async fn revoke_token(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    let by = state.tokens.who(&headers)?;
    let registry = state.registry.clone();
    blocking(move || registry.revoke_token(&by, &name, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pipeline(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<PipelineSpec>, AdminError> {
    state.tokens.who(&headers)?;
    Ok(Json(state.registry.tenant(&name)?.pipeline))
}

async fn replace_pipeline(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Result<Json<PipelineSpec>, JsonRejection>,
) -> Result<Json<PipelineSpec>, AdminError> {
    let by = state.tokens.who(&headers)?;
    let pipeline = body(json)?;
    let registry = state.registry.clone();
    let spec = blocking(move || registry.replace_pipeline(&by, &name, pipeline)).await?;
    Ok(Json(spec.pipeline))
}

async fn plugins(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<PluginsView>, AdminError> {
    state.tokens.who(&headers)?;
    Ok(Json(state.registry.plugins(&name)?))
}

async fn deploy_plugin(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path((name, plugin)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Response {
    let by = match state.tokens.who(&headers) {
        Ok(by) => by,
        Err(error) => return error.into_response(),
    };
    let registry = state.registry.clone();
    deploy::start(registry, by, name, plugin, bytes, state.max_plugin_bytes)
        .await
        .into_response()
}

async fn plugin_version(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path((name, plugin, version)): Path<(String, String, String)>,
) -> Response {
    if let Err(error) = state.tokens.who(&headers) {
        return error.into_response();
    }
    deploy::deployment(&state.registry, &name, &plugin, &version).into_response()
}

async fn rollback_plugin(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path((name, plugin)): Path<(String, String)>,
    json: Result<Json<deploy::Rollback>, JsonRejection>,
) -> Response {
    let by = match state.tokens.who(&headers) {
        Ok(by) => by,
        Err(error) => return error.into_response(),
    };
    deploy::roll_back(state.registry.clone(), by, name, plugin, json)
        .await
        .into_response()
}

/// Where an audit page starts, and how long it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// A page of the audit log, and where the next one starts.
#[derive(Serialize)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    next: Option<u64>,
}

/// Audit entries a page holds unless `limit` says otherwise, and at most.
const AUDIT_PAGE: usize = 100;
const MAX_AUDIT_PAGE: usize = 1_000;

async fn audit(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, AdminError> {
    state.tokens.who(&headers)?;
    let Query(query) = query.map_err(|e| AdminError::Body(e.body_text()))?;
    let limit = query.limit.unwrap_or(AUDIT_PAGE).clamp(1, MAX_AUDIT_PAGE);
    let registry = state.registry.clone();
    let entries = blocking(move || registry.audit(query.after, limit)).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage { entries, next }))
}

async fn metrics(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, AdminError> {
    state.tokens.who(&headers)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}

/// The document is public: it holds no data.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("OpenAPI is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .filter(|m| m.as_str() != "parameters")
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn admin_tokens_are_found_by_digest_and_tenant_style_headers_too() {
        let secret: Secret = serde_json::from_str("\"admin-token-0123456789\"").expect("secret");
        let tokens = AdminTokens::new([("ops", &secret)]);
        let mut headers = HeaderMap::new();
        assert!(matches!(
            tokens.who(&headers),
            Err(AdminError::Unauthorized { configured: true })
        ));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer admin-token-0123456789".parse().expect("header"),
        );
        assert_eq!(tokens.who(&headers).expect("who"), "ops");
        headers.insert(
            header::AUTHORIZATION,
            "Bearer admin-token-012345678".parse().expect("header"),
        );
        assert!(tokens.who(&headers).is_err());
        let none = AdminTokens::default();
        assert!(
            none.who(&headers)
                .expect_err("none configured")
                .to_string()
                .contains("no admin tokens are configured")
        );
    }
}
