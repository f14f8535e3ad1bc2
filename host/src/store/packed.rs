//! Packed deltas: a column of 64-bit integers as the first value, then its differences in
//! blocks of [`BLOCK`], each block's differences less the block's least, in the fewest bits
//! that hold them all. The chunk format's fast layout for integers and decimals (see
//! [`super::chunk`]).
//!
//! # Why by hand
//!
//! pco compresses these columns a little smaller (it entropy-codes the differences: a
//! counter's steps of 1 to 5 take it 2.3 bits, packing 3), but its decoding rebuilds its
//! tables for every chunk of at most 1,024 values, and reading chunks was half of an
//! aggregation over a day of 1,000 series (issue 14's q5). Unpacking and summing is a
//! shift, a mask and an add a value. `cargo bench --bench chunks` reads the same full
//! chunks both ways, into the floats a query aggregates (its "read as numbers" lines): a
//! counter 2.77 ns a value packed against 6.38 through pco, a walk of two decimals 3.85
//! against 10.46. The `bitpacking` crate packs only `u32` (our integers, digits and their
//! differences are 64-bit), so it would need this fallback anyway.
//!
//! # Layout
//!
//! The first value as 8 little-endian bytes; then for each block of up to [`BLOCK`]
//! differences (each value less the one before, wrapping), its least difference (signed, a
//! zigzag varint), the bit width of its largest difference less that (a byte, 0 to 64),
//! and those differences less the least, `width` bits each, least significant bit first,
//! in as many bytes as they fill. A width of 0 means every difference is the least: an
//! evenly growing counter or a constant costs two bytes a block.

use crate::varint;

/// Differences per block: small enough that an outlier widens few values, large enough
/// that the two header bytes are a rounding error.
const BLOCK: usize = 128;

/// Bytes of a block's packed differences at their widest.
const BLOCK_BYTES: usize = BLOCK * 8;

/// Appends `values` (at least one), packed.
pub fn encode(values: &[u64], out: &mut Vec<u8>) {
    let Some((&first, _)) = values.split_first() else {
        return;
    };
    out.extend_from_slice(&first.to_le_bytes());
    let deltas: Vec<u64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    for block in deltas.chunks(BLOCK) {
        let least = block.iter().map(|d| *d as i64).min().unwrap_or(0);
        let rest = |d: u64| d.wrapping_sub(least as u64);
        let width = block
            .iter()
            .map(|d| 64 - rest(*d).leading_zeros())
            .max()
            .unwrap_or(0);
        varint::put(out, varint::zigzag(least));
        out.push(width as u8);
        if width == 0 {
            continue;
        }
        let (mut acc, mut bits) = (0u128, 0u32);
        for d in block {
            acc |= u128::from(rest(*d)) << bits;
            bits += width;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(acc as u8);
        }
    }
}

/// Decodes `n` (at least one) packed values from the start of `bytes` into `out` (cleared
/// first); the bytes after them.
///
/// # Errors
/// What is wrong when the bytes end early or a block's width passes 64.
pub fn decode_into<'a>(bytes: &'a [u8], n: usize, out: &mut Vec<u64>) -> Result<&'a [u8], String> {
    out.clear();
    if n == 0 {
        return Ok(bytes);
    }
    let (first, mut rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("packed values: the first value is cut short")?;
    let mut value = u64::from_le_bytes(*first);
    out.reserve(n);
    out.push(value);
    // Zero padding past the packed bytes: each difference reads a whole word at its byte.
    let mut scratch = [0u8; BLOCK_BYTES + 16];
    while out.len() < n {
        let len = BLOCK.min(n - out.len());
        let least = varint::take(&mut rest)
            .map_err(|e| format!("packed values: a block's least difference: {e}"))?;
        let least = varint::unzigzag(least) as u64;
        let (&width, after) = rest
            .split_first()
            .ok_or("packed values: a block's width is cut short")?;
        rest = after;
        let width = u32::from(width);
        if width > 64 {
            return Err(format!("packed values: a block {width} bits wide"));
        }
        let size = (len * width as usize).div_ceil(8);
        let (packed, after) = rest
            .split_at_checked(size)
            .ok_or_else(|| format!("packed values: a block of {size} bytes is cut short"))?;
        rest = after;
        scratch[..size].copy_from_slice(packed);
        scratch[size..size + 16].fill(0);
        let from = out.len();
        out.resize(from + len, 0);
        let slots = &mut out[from..];
        let w = width as usize;
        match width {
            0 => {
                for slot in slots {
                    value = value.wrapping_add(least);
                    *slot = value;
                }
            }
            // A word from the byte of a difference's first bit holds it whole.
            1..=56 => {
                let mask = u64::MAX >> (64 - width);
                for (i, slot) in slots.iter_mut().enumerate() {
                    let bit = i * w;
                    let word = u64::from_le_bytes(array(&scratch, bit / 8));
                    value = value.wrapping_add(least.wrapping_add((word >> (bit % 8)) & mask));
                    *slot = value;
                }
            }
            _ => {
                let mask = u64::MAX >> (64 - width);
                for (i, slot) in slots.iter_mut().enumerate() {
                    let bit = i * w;
                    let word = u128::from_le_bytes(array(&scratch, bit / 8));
                    value =
                        value.wrapping_add(least.wrapping_add((word >> (bit % 8)) as u64 & mask));
                    *slot = value;
                }
            }
        }
    }
    Ok(rest)
}

/// The `N` bytes of `scratch` at `at` (which the block's widths keep inside it).
#[inline]
fn array<const N: usize>(scratch: &[u8; BLOCK_BYTES + 16], at: usize) -> [u8; N] {
    let mut word = [0; N];
    word.copy_from_slice(&scratch[at..at + N]);
    word
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[u64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        bytes.extend_from_slice(b"tail");
        let mut out = vec![7];
        let rest = decode_into(&bytes, values.len(), &mut out).expect("decode");
        assert_eq!(out, values);
        assert_eq!(rest, b"tail");
        bytes
    }

    #[test]
    fn steady_columns_cost_two_bytes_a_block_and_steps_their_width() {
        // A counter growing by 10 and a constant: 8 bytes, then 2 a block.
        let counter: Vec<u64> = (0..1_024).map(|i| 1_000 + 10 * i).collect();
        assert_eq!(round_trip(&counter).len(), 8 + 8 * 2 + 4);
        assert_eq!(round_trip(&[5; 300]).len(), 8 + 3 * 2 + 4);
        // Steps of 1 to 5: the least is 1, the rest 0 to 4 in 3 bits.
        let steps: Vec<u64> = (0..129)
            .scan(0, |c, i| {
                *c += 1 + i % 5;
                Some(*c)
            })
            .collect();
        assert_eq!(round_trip(&steps).len(), 8 + 2 + 128 * 3 / 8 + 4);
    }

    #[test]
    fn extremes_and_walks_round_trip() {
        round_trip(&[u64::MAX]);
        round_trip(&[0, u64::MAX, 0, 1 << 63, (1 << 63) - 1, 0]);
        let walk: Vec<u64> = [-5i64, 3, -50, 50, i64::MIN, i64::MAX, 0]
            .iter()
            .map(|v| *v as u64)
            .collect();
        round_trip(&walk);
    }

    #[test]
    fn short_or_wrong_bytes_say_what_is_wrong() {
        let values: Vec<u64> = (0..300).map(|i| i * i).collect();
        let mut bytes = Vec::new();
        encode(&values, &mut bytes);
        let mut out = Vec::new();
        for cut in [0, 5, 8, 9, 10, bytes.len() - 1] {
            let error = decode_into(&bytes[..cut], values.len(), &mut out).expect_err("cut");
            assert!(error.contains("cut short"), "{cut}: {error}");
        }
        let mut wide = bytes.clone();
        wide[9] = 65;
        let error = decode_into(&wide, values.len(), &mut out).expect_err("width");
        assert!(error.contains("65 bits wide"), "{error}");
    }

    proptest! {
        #[test]
        fn any_column_round_trips(
            values in prop_oneof![
                proptest::collection::vec(any::<u64>(), 1..400),
                proptest::collection::vec(-1_000i64..1_000, 1..400)
                    .prop_map(|v| v.into_iter().map(|x| x as u64).collect()),
                (any::<u64>(), proptest::collection::vec(0u64..(1 << 20), 1..400))
                    .prop_map(|(start, steps)| steps.iter().scan(start, |c, s| {
                        *c = c.wrapping_add(*s);
                        Some(*c)
                    }).collect()),
            ],
        ) {
            round_trip(&values);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            n in 1usize..300,
        ) {
            let mut out = Vec::new();
            if decode_into(&bytes, n, &mut out).is_ok() {
                prop_assert_eq!(out.len(), n);
            }
        }
    }
}
