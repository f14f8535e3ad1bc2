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
    decode_sample(&get(key)?)
}

/// The sample stored as `bytes` by [`encode_sample`]: the timestamp and the value's bits,
/// little-endian; none when there are fewer than 16 bytes.
fn decode_sample(bytes: &[u8]) -> Option<(i64, f64)> {
    let ts = i64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let value = f64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((ts, value))
}

/// Stores a sample (timestamp, value) under `key`: what a rate or delta plugin remembers.
///
/// # Errors
/// As [`set`].
pub fn set_sample(key: &str, (ts, value): (i64, f64)) -> Result<(), PluginError> {
    set(key, &encode_sample((ts, value)))
}

/// The 16 bytes [`set_sample`] stores: the timestamp, then the value's bits, little-endian.
fn encode_sample((ts, value): (i64, f64)) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&ts.to_le_bytes());
    bytes[8..].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares values by bits: NaN and -0.0 must survive exactly.
    fn round_trip(sample: (i64, f64)) -> (i64, u64) {
        let (ts, value) = decode_sample(&encode_sample(sample)).expect("16 bytes decode");
        (ts, value.to_bits())
    }

    #[test]
    fn sample_round_trips_bit_exact_at_the_extremes() {
        for sample in [
            (0, 0.0),
            (1_700_000_000_000_000_000, 12.5),
            (i64::MIN, f64::MIN),
            (i64::MAX, f64::MAX),
            (-1, -0.0),
            (42, f64::INFINITY),
            (42, f64::NEG_INFINITY),
            (42, f64::MIN_POSITIVE),
            (7, f64::from_bits(0x7ff8_0000_dead_beef)), // a NaN with a payload
        ] {
            assert_eq!(
                round_trip(sample),
                (sample.0, sample.1.to_bits()),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn sample_layout_is_little_endian_timestamp_then_value_bits() {
        // State outlives plugin versions: this layout is what older versions stored.
        let mut expected = [0u8; 16];
        expected[0] = 1;
        expected[14] = 0xf0;
        expected[15] = 0x3f; // 1.0 is 0x3ff0_0000_0000_0000
        assert_eq!(encode_sample((1, 1.0)), expected);
        let bytes = encode_sample((-2, -2.0));
        assert_eq!(bytes[..8], [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bytes[8..], (-2.0f64).to_bits().to_le_bytes());
    }

    #[test]
    fn fewer_than_16_bytes_is_no_sample() {
        // A value stored by `set` under the same key, or a truncated one, is not a sample.
        for len in [0, 1, 8, 15] {
            assert_eq!(decode_sample(&vec![0xab; len]), None, "{len} bytes");
        }
    }

    #[test]
    fn bytes_past_the_sample_are_ignored() {
        let mut bytes = encode_sample((-5, 2.5)).to_vec();
        bytes.extend_from_slice(b"trailing");
        assert_eq!(decode_sample(&bytes), Some((-5, 2.5)));
    }
}
