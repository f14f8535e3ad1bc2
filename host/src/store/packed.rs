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
//! zigzag varint), the bit width of its largest difference less that (a byte, 0 to 64,
//! plus [`FACTORED`] when a factor follows), the factor if any (a varint: the greatest
//! common divisor of the block's differences less the least, when above 1), and those
//! differences less the least, divided by the factor, `width` bits each, least significant
//! bit first, in as many bytes as they fill. A width of 0 means every difference is the
//! least: an evenly growing counter or a constant costs two bytes a block.
//!
//! The factor is for counters that step by multiples of something (bytes in whole pages,
//! a remote-written counter of a per-series scale): pco's integer-multiple mode found
//! those and packing without it was bigger by half again, so such columns went to pco
//! and read at its speed. Decoding multiplies each difference, off the chain of adds
//! that makes the values, so unfactored blocks read as fast as before. A binary older
//! than the factor refuses a factored block as "N bits wide" (N above 64).

use crate::varint;

/// Differences per block: small enough that an outlier widens few values, large enough
/// that the two header bytes are a rounding error.
const BLOCK: usize = 128;

/// Bytes of a block's packed differences at their widest.
const BLOCK_BYTES: usize = BLOCK * 8;

/// Added to a block's width byte when a factor follows it.
const FACTORED: u8 = 0x80;

/// Appends `values` (at least one), packed.
pub fn encode(values: &[u64], out: &mut Vec<u8>) {
    let Some((&first, _)) = values.split_first() else {
        return;
    };
    out.extend_from_slice(&first.to_le_bytes());
    let deltas: Vec<u64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    for block in deltas.chunks(BLOCK) {
        let least = block.iter().map(|d| *d as i64).min().unwrap_or(0);
        let factor = block
            .iter()
            .try_fold(0, |g, d| match gcd(g, d.wrapping_sub(least as u64)) {
                1 => None,
                g => Some(g),
            })
            .filter(|g| *g > 1);
        let rest = |d: u64| d.wrapping_sub(least as u64) / factor.unwrap_or(1);
        let width = block
            .iter()
            .map(|d| 64 - rest(*d).leading_zeros())
            .max()
            .unwrap_or(0);
        varint::put(out, varint::zigzag(least));
        match factor {
            Some(factor) => {
                out.push(width as u8 | FACTORED);
                varint::put(out, factor);
            }
            None => out.push(width as u8),
        }
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
        let factor = if width & FACTORED == 0 {
            1
        } else {
            varint::take(&mut rest).map_err(|e| format!("packed values: a block's factor: {e}"))?
        };
        let width = u32::from(width & !FACTORED);
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
                    let step = factor.wrapping_mul((word >> (bit % 8)) & mask);
                    value = value.wrapping_add(least.wrapping_add(step));
                    *slot = value;
                }
            }
            _ => {
                let mask = u64::MAX >> (64 - width);
                for (i, slot) in slots.iter_mut().enumerate() {
                    let bit = i * w;
                    let word = u128::from_le_bytes(array(&scratch, bit / 8));
                    let step = factor.wrapping_mul((word >> (bit % 8)) as u64 & mask);
                    value = value.wrapping_add(least.wrapping_add(step));
                    *slot = value;
                }
            }
        }
    }
    Ok(rest)
}

/// The greatest common divisor (Stein's binary algorithm); `gcd(0, b)` is `b`.
fn gcd(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a | b;
    }
    let shift = (a | b).trailing_zeros();
    let (mut a, mut b) = (a >> a.trailing_zeros(), b);
    while b != 0 {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
    }
    a << shift
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
    fn steps_that_share_a_factor_pack_divided_by_it() {
        // A counter of a scale of 50 stepping 50 × (1 to 19): its differences less the
        // least are multiples of 50 up to 900, 5 bits once divided instead of 10.
        let scaled: Vec<u64> = (0..129)
            .scan(0, |c, i| {
                *c += 50 * (1 + (7 * i * i + 13) % 19);
                Some(*c)
            })
            .collect();
        let bytes = round_trip(&scaled);
        let least = 50
            * (1 + (1..=128u64)
                .map(|i| (7 * i * i + 13) % 19)
                .min()
                .expect("128 steps"));
        let least_bytes = if least < 64 { 1 } else { 2 };
        let factor_bytes = 1;
        assert_eq!(bytes[8 + least_bytes], 5 | FACTORED);
        assert_eq!(
            bytes.len(),
            8 + least_bytes + 1 + factor_bytes + 128 * 5 / 8 + 4
        );
        // Block by block: the second block's steps have no factor and are packed as they
        // are, the third's (all the same) need none.
        let mut mixed = scaled.clone();
        mixed.extend((1..=128).scan(scaled[128], |c, i| {
            *c += i % 7;
            Some(*c)
        }));
        let last = mixed[256];
        mixed.extend((1..=128).map(|i| last + 6 * i));
        round_trip(&mixed);
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
                // Steps of a common factor, any factor (wrapping past 2^64 at the largest).
                (any::<u64>(), any::<u64>(), proptest::collection::vec(0u64..64, 1..400))
                    .prop_map(|(start, factor, steps)| steps.iter().scan(start, |c, s| {
                        *c = c.wrapping_add(factor.wrapping_mul(*s));
                        Some(*c)
                    }).collect()),
            ],
        ) {
            round_trip(&values);
        }

        #[test]
        fn gcd_agrees_with_euclids(a in any::<u64>(), b in any::<u64>(), k in 1u64..1_000) {
            fn euclid(a: u64, b: u64) -> u64 {
                if b == 0 { a } else { euclid(b, a % b) }
            }
            for (a, b) in [(a, b), (a / k * k, b / k * k), (0, b), (a, 0)] {
                prop_assert_eq!(gcd(a, b), euclid(a, b));
            }
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
