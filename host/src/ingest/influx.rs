//! InfluxDB line-protocol writes, v2 (`/api/v2/write`) and v1 (`/write`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{Decoded, IngestState, body, precision_param};
use crate::api::{ApiError, authenticate};
use crate::lineproto::{self, Precision};
use crate::time::now_ns;

/// Query parameters of `/api/v2/write`. Clients also send `bucket` and `org`; they are
/// ignored, because a tenant's data is one namespace, chosen by its token.
#[derive(Debug, Deserialize)]
pub struct V2Params {
    precision: Option<String>,
}

/// Query parameters of `/write` (v1). `db`, `rp` and `u` are ignored like `bucket`; the
/// password `p` may carry the token.
#[derive(Debug, Deserialize)]
pub struct V1Params {
    precision: Option<String>,
    p: Option<String>,
}

/// `POST /api/v2/write`.
pub async fn write_v2(
    State(state): State<Arc<IngestState>>,
    Query(params): Query<V2Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    write(state, &headers, params.precision.as_deref(), None, body).await
}

/// `POST /write`.
pub async fn write_v1(
    State(state): State<Arc<IngestState>>,
    Query(params): Query<V1Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    write(
        state,
        &headers,
        params.precision.as_deref(),
        params.p.as_deref(),
        body,
    )
    .await
}

async fn write(
    state: Arc<IngestState>,
    headers: &HeaderMap,
    precision: Option<&str>,
    password: Option<&str>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let tenant =
        authenticate(state.tenants.as_ref(), headers, password).map_err(|e| state.reject(e))?;
    let precision =
        precision_param(precision, Precision::Nanoseconds).map_err(|e| state.reject(e))?;
    let text = body::read_text(body, headers, state.max_body_bytes)
        .await
        .map_err(|e| state.reject(e))?;
    state
        .accept(tenant, text.len(), move || parse(&text, precision))
        .await
}

fn parse(text: &str, precision: Precision) -> Result<Decoded, ApiError> {
    let (points, lines, errors) = lineproto::parse_lines(text, precision, now_ns());
    match errors.first() {
        None => Ok(Decoded::lines(points, lines)),
        Some(first) => Err(ApiError::Invalid {
            message: format!(
                "{first} ({} of {} lines bad; nothing was written)",
                errors.len(),
                errors.len() + points.len()
            ),
            line: Some(first.line),
        }),
    }
}
