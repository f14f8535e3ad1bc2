//! Key-value state the host keeps per pipeline stage, across batches and plugin versions.
//! Writes of a batch take effect only if the batch succeeds.

use crate::PluginError;
use crate::bindings::iface::state as wit;

/// The bytes stored under `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    wit::get(key)
}

/// Stores `value` under `key`.
///
/// # Errors
/// When the stage's state is full or the value too large.
pub fn set(key: &str, value: &[u8]) -> Result<(), PluginError> {
    wit::set(key, value).map_err(PluginError::new)
}

/// Removes `key`.
pub fn remove(key: &str) {
    wit::remove(key);
}

/// The sample (timestamp, value) stored under `key` by [`set_sample`].
pub fn get_sample(key: &str) -> Option<(i64, f64)> {
    let bytes = get(key)?;
    let ts = i64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let value = f64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((ts, value))
}

/// Stores a sample (timestamp, value) under `key`: what a rate or delta plugin remembers.
///
/// # Errors
/// As [`set`].
pub fn set_sample(key: &str, (ts, value): (i64, f64)) -> Result<(), PluginError> {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&ts.to_le_bytes());
    bytes[8..].copy_from_slice(&value.to_le_bytes());
    set(key, &bytes)
}
