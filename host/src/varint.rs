//! LEB128 varints and zigzag signs, as postcard writes them: the integers of log records
//! and chunks on disk.

/// Appends `v` in 7-bit groups, least significant first.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of `v` as a varint.
pub fn len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

/// Reads a varint off the front of `bytes`.
///
/// # Errors
/// "cut short" when the bytes end inside it, "past 64 bits" when it is longer.
pub fn take(bytes: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("varint cut short")?;
        *bytes = rest;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            break;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint past 64 bits")
}

/// Small magnitudes of either sign to small unsigned numbers: 0, -1, 1, -2... to 0, 1, 2, 3...
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extremes_and_refuses_overlong_or_short() {
        for v in [0, 1, 127, 128, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(out.len(), len(v));
            let mut bytes = &out[..];
            assert_eq!(take(&mut bytes), Ok(v));
            assert!(bytes.is_empty());
            let mut short = &out[..out.len() - 1];
            assert_eq!(take(&mut short), Err("varint cut short"));
        }
        let mut eleven = &[0xff; 11][..];
        assert_eq!(take(&mut eleven), Err("varint past 64 bits"));
        let mut bit_64 = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..];
        assert_eq!(take(&mut bit_64), Err("varint past 64 bits"));
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
    }
}
