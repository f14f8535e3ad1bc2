//! Re-running a tenant's dead letters through its current pipeline once the cause is fixed
//! (a plugin deployed again, a type conflict resolved): their points are appended to the
//! log as if written again, and the letters noted as re-run, so a second replay takes only
//! letters that failed since.
//!
//! Each point is stored once: a crash between the append and the note re-runs the letters
//! again, and the store keeps a point (tenant, series, time) once however often it is
//! written. A re-run that fails again becomes a new dead letter, for a later replay.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::IngestState;
use crate::api::{ApiError, authenticate};
use crate::lineproto::{Precision, parse};
use crate::pipeline::DeadLetterError;
use crate::tenant::TenantId;
use crate::transport::records_for;

/// Letters read, and their points appended, at a time.
const REPLAY_PAGE: usize = 100;

/// What a replay did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Replayed {
    /// Letters whose points were appended again.
    pub letters: usize,
    /// Their points.
    pub points: usize,
    /// Letters of what was derived from points (windows, alerts, late values): counted,
    /// not re-run.
    pub derived: usize,
    /// Items that didn't parse as points (left out).
    pub unparsable: usize,
}

/// `POST /api/v1/dead-letters/replay`: re-runs the tenant's dead letters not yet re-run.
pub async fn replay(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
) -> Result<Json<Replayed>, ApiError> {
    let tenant =
        authenticate(state.tenants.as_ref(), &headers, None).map_err(|e| state.reject(e))?;
    state
        .check_backpressure(&tenant)
        .map_err(|e| state.reject(e))?;
    let this = state.clone();
    tokio::task::spawn_blocking(move || this.replay(&tenant))
        .await
        .map_err(|e| ApiError::Unavailable {
            what: "replay worker",
            detail: e.to_string(),
        })?
        .map(Json)
        .map_err(|e| state.reject(e))
}

fn log_error(e: DeadLetterError) -> ApiError {
    ApiError::Unavailable {
        what: "dead letters",
        detail: e.to_string(),
    }
}

impl IngestState {
    fn replay(&self, tenant: &TenantId) -> Result<Replayed, ApiError> {
        let log = &self.dead_letters;
        let _one_at_a_time = log.replaying();
        let mut from = log.replayed_to(tenant).map_err(log_error)?;
        let mut done = Replayed::default();
        loop {
            let page = log.page(tenant, from, REPLAY_PAGE).map_err(log_error)?;
            let mut points = Vec::new();
            for letter in &page.letters {
                if letter.derived {
                    done.derived += 1;
                    continue;
                }
                let (parsed, errors) = parse(&letter.items.join("\n"), Precision::Nanoseconds, 0);
                done.letters += 1;
                done.unparsable += errors.len();
                points.extend(parsed);
            }
            if !points.is_empty() {
                done.points += points.len();
                let partitions = self.producer.partitions();
                let records = records_for(tenant, points, partitions);
                self.producer
                    .append(records)
                    .map_err(|e| ApiError::Unavailable {
                        what: "transport",
                        detail: e.to_string(),
                    })?;
            }
            if page.read_to > from {
                log.mark_replayed(tenant, page.read_to).map_err(log_error)?;
            }
            match page.next() {
                Some(next) => from = next,
                None => return Ok(done),
            }
        }
    }
}
