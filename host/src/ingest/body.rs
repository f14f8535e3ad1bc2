//! Request bodies: read up to the limit, gunzip when `Content-Encoding: gzip`, and never
//! hold more than the limit in memory, compressed or not.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;

use crate::api::ApiError;

/// The body as UTF-8 text.
///
/// # Errors
/// 413 over the limit, 400 for bad gzip or invalid UTF-8.
pub async fn read_text(body: Body, headers: &HeaderMap, limit: usize) -> Result<String, ApiError> {
    let bytes = read_bytes(body, headers, limit).await?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        ApiError::Invalid {
            message: format!("line {line}: body is not valid UTF-8"),
            line: Some(line),
        }
    })
}

/// The body's bytes, gunzipped when `Content-Encoding: gzip`.
///
/// # Errors
/// 413 over the limit, 400 for bad gzip.
pub async fn read_bytes(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge { limit })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::new();
    MultiGzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::invalid(format!("body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge { limit });
    }
    Ok(out)
}
