//! Chunks: up to [`MAX_POINTS`] points of one series within [`MAX_SPAN`], stored as one
//! entry. One LSM entry per point made the tree's per-entry work (memtable insert, journal,
//! flush, compaction) the bulk of the write path; a chunk pays it once per few hundred
//! points.
//!
//! # Format 2
//!
//! After [`crate::format`]'s header (`S`, [`CHUNK_VERSION`]) comes a layout byte, chosen per
//! chunk, then what it names. Its low three bits are the values' type (0 float, 1 integer,
//! 2 unsigned, 3 boolean, 4 string; 7 is the generic layout below), bit 3 says the times are
//! pco, bit 4 that the values are, bit 5 that the times are evenly spaced, bit 6 (with bit
//! 4 or 7, of floats only) that the floats are decimals, bit 7 (of integers, unsigned
//! integers and decimals; not with bit 4) that the values are packed deltas. The typed
//! layouts hold the count of points (a varint), then the times, then the values:
//!
//! - times, plain: the first as 8 little-endian bytes, then each gap's change from the gap
//!   before (delta-of-delta; the first gap's from 0) as a zigzag varint, so evenly spaced
//!   times cost a byte each; or pco (below) of the times, after its length; or, evenly
//!   spaced, the first as 8 little-endian bytes and the gap as a varint. Sources that
//!   sample on a fixed interval (Telegraf rounds to it) write these, and decoding them is
//!   a loop of additions: pco's decode of such times was a quarter of an aggregation's
//!   time (VictoriaMetrics has the same special case, its `DeltaConst`);
//! - floats, plain: the first's bits (8 little-endian bytes), then each one's XOR with the
//!   one before (Gorilla's, byte-aligned): a byte saying how many of its 8 bytes are zero
//!   at the top and at the bottom (1 + 8 × top + bottom, or 0 when all are: a repeat), then
//!   the others. Bits, so NaN payloads and -0.0 stay as they came;
//! - integers and unsigned integers, plain: each one's difference from the one before (the
//!   first's from 0) as a zigzag varint, in wrapping arithmetic, so every pair of the full
//!   range has one, and the decoder's wrapping sum gives back the exact value;
//! - numbers, pco: the rest of the chunk, pco's "wrapped" format of the column;
//! - integers and unsigned integers, packed: the rest of the chunk, [`packed`]'s layout of
//!   the column (as u64, integers in two's complement);
//! - floats, decimal: a byte saying how many decimal places (0 to 15), then pco's format of
//!   their digits as integers (each float times 10 to that power), or with bit 7 their
//!   packed layout; each float is its digits divided by the power of ten, which the
//!   encoder checks gives back its bits;
//! - booleans: the first value (a byte), then the length of each run of equal values
//!   (varints);
//! - strings: a dictionary (its size, then each distinct string, in order of first
//!   appearance, as a varint length and UTF-8), then each run of equal values as its index
//!   into the dictionary and its length.
//!
//! The runs must fill the count exactly, and nothing may follow the values but in pco's
//! column: a chunk cut short fails to decode rather than decoding to other points.
//!
//! The encoder writes times and numbers every way once a chunk has `PCO_FROM` points, and
//! keeps the smaller of each, but packed values win unless they are half as big again as
//! the smaller of the others (`PACKED_SLACK`): they read 2 to 3 times faster than pco
//! (`cargo bench --bench chunks`: a day of the storage bench's counters and walks, read
//! as a query reads them, 2.8 and 3.9 ns a value against 6.4 and 10.5 through pco), for
//! a few percent more bytes on these shapes. The generic layout, for values of more than
//! one type (which the store never writes: a series has one type), more than `MAX_TYPED`
//! points or `MAX_TYPED_STRING_BYTES` of strings, is format 1's postcard without its first
//! gap (always 0), so never bigger than format 1. It is also written where it is smaller than
//! the typed layout (a few points at small times, or adversarial gaps): a chunk in format 2
//! is never bigger than in format 1, however small.
//!
//! # Why pco
//!
//! Measured on our data shapes, bytes per value (its time included) and, in brackets, ns
//! per value to encode / decode, on a shared 2-core machine (times move by ±30 % from run
//! to run):
//!
//! ```text
//! cargo bench --bench chunks
//! ```
//!
//! | values, 10 s apart | points | format 1 | format 2 | pco 1.1, its defaults | Gorilla, by hand | tsz 0.1.4, times in s |
//! |---|---|---|---|---|---|---|
//! | float walk, 2 decimals | 1 | 23.0 (164/171) | 20.0 (194/139) | 54.0 (3751/2875) | 16.0 (96/91) | 23.0 (188/90) |
//! | | 5 | 15.8 (39/58) | 10.6 (72/30) | 21.8 (601/506) | 10.4 (58/54) | 10.2 (66/49) |
//! | | 360 | 14.03 (13/20) | 1.11 (41/11) | 1.42 (271/17) | 7.02 (24/19) | 7.01 (32/21) |
//! | | 1,024 | 14.01 (12/24) | **1.02** (47/10) | 1.19 (270/13) | 6.81 (22/19) | 6.80 (32/16) |
//! | the same, ±2 ms jitter in ns | 1,024 | 14.01 (12/22) | 3.91 (76/16) | 4.04 (524/19) | 11.47 (44/37) | 7.75 (64/44) |
//! | the same, ±2 ms jitter in ms | 1,024 | 14.01 (14/18) | 1.46 (53/12) | 1.60 (359/17) | 10.93 (42/36) | 7.65 (40/24) |
//! | integer counter | 1 | 20.0 (157/171) | 17.0 (174/119) | 54.0 (2444/2507) | 16.0 (91/88) | 23.0 (164/84) |
//! | | 5 | 12.8 (39/52) | 5.8 (38/28) | 17.4 (713/479) | 6.6 (39/39) | 6.6 (53/32) |
//! | | 1,024 | 11.01 (15/20) | **1.29** (19/6) | 1.34 (214/6) | 1.88 (12/9) | 2.78 (20/16) |
//! | gauge, few repeated values | 5 | 15.8 (34/50) | 5.8 (57/25) | 15.8 (649/583) | 5.2 (39/34) | 5.0 (38/23) |
//! | | 1,024 | 14.01 (15/25) | 0.11 (39/11) | 0.38 (124/13) | 0.31 (9/7) | 0.31 (9/9) |
//! | booleans, rare flips | 1 | 16.0 (153/195) | 14.0 (118/138) | | | |
//! | | 1,024 | 7.01 (12/18) | 0.03 (6/11) | | | |
//! | strings, 3 distinct | 1 | 18.0 (130/178) | 18.0 (190/170) | | | |
//! | | 1,024 | 12.92 (15/28) | 0.08 (25/18) | | | |
//!
//! XOR (Gorilla) leaves a value of two decimals 6.8 bytes: a decimal fraction fills the
//! mantissa, so consecutive values share few bits. pco finds the 0.01 grid (its float
//! multiple mode) and entropy-codes the steps: 1.19 B/value with the times; format 2
//! stores such floats as decimals (their digits, as pco's integers), 1.02 B/value with
//! evenly spaced times, under VictoriaMetrics' 1.5 on the same shape (issue 14), and
//! integers and jittered times compress better too (pco's integer multiple mode finds
//! whole ms). Gorilla is ahead only in tiny chunks (by about a byte a value), where pco's
//! metadata costs more than it saves; those get the plain layouts (a byte-aligned Gorilla
//! for floats). With its defaults (level 8 of 12, every delta
//! encoding tried) pco encodes at 220-360 ns a value; at level 4 with first-order deltas
//! at 30-60, within 2 % of the size. It decodes faster than format 1's postcard. pco is
//! maintained (pcodec: commits through August 2026), and corrupt input is an error, not a
//! panic (its corruption tests, and our fuzz target and tests).
//!
//! tsz doesn't fit: it is Gorilla for (u64 seconds, f64), keeps the first time's distance
//! from the block start in 14 bits and a delta-of-delta in 32 (`write_first`,
//! `write_next_timestamp`), so times in ns don't round-trip (the benchmark checks:
//! "tsz round-trips times in ns: false"), times before 1970 don't exist, and integers would
//! go through f64. Its last release, 0.1.4, is of March 2023. The hand-written Gorilla in
//! the benchmark takes times in ns, for comparison.
//!
//! Format 1 (postcard: the first time, each point's distance from the previous one, and
//! the values as [`format::Value`]s) still reads. Chunks of stores written before the
//! format had a version (postcard of the WIT types, no header) are read by
//! [`decode_legacy`], and rewritten in their own format.

use std::collections::HashMap;

use pco::data_types::Number;
use pco::wrapped::{FileCompressor, FileDecompressor};
use pco::{ChunkConfig, DeltaSpec, PagingSpec};
use serde::ser::{Serialize, Serializer};

use super::packed;
use crate::format::{self, CHUNK_VERSION, FormatError, ValueOut};
use crate::point::{FieldValue, Nanos};
use crate::varint;

/// Most points in one chunk: bounds what a narrow query decodes beyond its range.
pub const MAX_POINTS: usize = 1_024;

/// Widest time span of one chunk (first to last point): a read of `[start, end)` finds every
/// chunk that can hold a point of it among those whose last point is in
/// `[start, end + MAX_SPAN]`. Four hours let a series sampled every 10 s fill its chunks
/// (1,024 points span 2.8 h): at one hour they held 360, and each chunk's own pco tables
/// and keys took the storage bench's workload A to 1.03 B/value, against 0.83 now. Only
/// ever raised: chunks written under a smaller span still fit the larger one.
pub const MAX_SPAN: Nanos = 4 * 3_600 * 1_000_000_000;

/// A point of a series: its time and value.
pub type Sample = (Nanos, FieldValue);

/// Chunk format 1: still read; written only to compare with ([`encode_v1`]).
const VERSION_1: u8 = 1;

/// The layout byte's low bits: the values' type, one of the five below, or [`GENERIC`].
const TYPE: u8 = 0b111;
const FLOAT: u8 = 0;
const INTEGER: u8 = 1;
const UNSIGNED: u8 = 2;
const BOOLEAN: u8 = 3;
const STRING: u8 = 4;
/// The layout of values of more than one type.
const GENERIC: u8 = 7;
/// Layout bit: the times are pco, not plain.
const TIMES_PCO: u8 = 1 << 3;
/// Layout bit: the values are pco, not plain.
const VALUES_PCO: u8 = 1 << 4;
/// Layout bit: the times are evenly spaced, stored as the first and the gap.
const TIMES_EVEN: u8 = 1 << 5;
/// Layout bit, of floats stored pco or packed: the floats are decimals, stored as their
/// digits (integers) after a byte saying how many places they have.
const VALUES_DECIMAL: u8 = 1 << 6;
/// Layout bit, of integers, unsigned integers and decimals: the values (the decimals'
/// digits) are packed deltas ([`packed`]), not pco.
const VALUES_PACKED: u8 = 1 << 7;

/// How much bigger than the smallest of pco and plain packed values may be and still be
/// chosen, as a fraction: they decode several times faster than pco (see [`packed`]), and
/// reading is what a year of telemetry is kept for.
const PACKED_SLACK: (usize, usize) = (3, 2);

/// Most decimal places of [`VALUES_DECIMAL`]: 10 to this power, and every integer of up to
/// 2^53, are exact in f64, so the division that reads a decimal is exact but for its one
/// rounding, the same as the parser's of its text.
const MAX_PLACES: usize = 15;

/// 10 to the power of each number of places.
const POWERS_OF_TEN: [f64; MAX_PLACES + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Most points of a typed layout. Its count is trusted to size the decoder's buffers, and
/// runs and pco columns can say many points in few bytes: this bounds what hostile bytes
/// can make a decoder allocate (64 Ki points, a few MB). Far above [`MAX_POINTS`]; a longer
/// chunk is written generic.
const MAX_TYPED: usize = 1 << 16;

/// Most bytes of the strings of a typed layout, counting each point's: a dictionary string
/// repeated by a run is decoded once a point, so this bounds what hostile bytes can make a
/// decoder allocate. A chunk of more is written generic (each string stored).
const MAX_TYPED_STRING_BYTES: usize = 64 << 20;

/// Fewest points for which pco is tried: its metadata (some 15 bytes per column) makes it
/// bigger than plain below this (see the measurements above).
const PCO_FROM: usize = 16;

/// pco's level: 4 of 12. On our shapes it compresses as well as the default 8 within 2 %,
/// 3 to 5 times faster.
const PCO_LEVEL: usize = 4;

/// Sorts `samples` by time, keeping only the last written of equal times (a rewrite of a
/// point replaces it), and cuts them into chunks.
pub fn cut(samples: &[Sample]) -> Vec<Vec<&Sample>> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    // Samples mostly come in time order: seen in one pass, which sorting them took several
    // of (7% of a store sync, Prometheus bench under perf).
    if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
        // Stable: equal times stay in write order, so the last of them is the newest.
        sorted.sort_by_key(|(ts, _)| *ts);
    }
    let mut chunks: Vec<Vec<&Sample>> = Vec::new();
    for (i, sample) in sorted.iter().enumerate() {
        if sorted.get(i + 1).is_some_and(|next| next.0 == sample.0) {
            continue;
        }
        match chunks.last_mut() {
            Some(chunk)
                if chunk.len() < MAX_POINTS && sample.0.saturating_sub(chunk[0].0) <= MAX_SPAN =>
            {
                chunk.push(sample);
            }
            _ => chunks.push(vec![sample]),
        }
    }
    chunks
}

/// Encodes one chunk, as `cut` made it (sorted), in format [`CHUNK_VERSION`].
pub fn encode(chunk: &[&Sample]) -> Vec<u8> {
    let Some(column) = Column::of(chunk) else {
        return encode_generic(chunk);
    };
    let typed = encode_typed(chunk, &column);
    if generic_len(chunk) < typed.len() {
        return encode_generic(chunk);
    }
    typed
}

/// A chunk's values, of one type.
enum Column<'a> {
    Float(Vec<f64>),
    Integer(Vec<i64>),
    Unsigned(Vec<u64>),
    Boolean(Vec<bool>),
    String(Vec<&'a str>),
}

impl<'a> Column<'a> {
    /// The values of `chunk`; none when they are of more than one type, or too many.
    fn of(chunk: &[&'a Sample]) -> Option<Self> {
        if chunk.len() > MAX_TYPED {
            return None;
        }
        let n = chunk.len();
        let mut column = match chunk.first().map(|(_, v)| v) {
            None | Some(FieldValue::Float(_)) => Column::Float(Vec::with_capacity(n)),
            Some(FieldValue::Integer(_)) => Column::Integer(Vec::with_capacity(n)),
            Some(FieldValue::Unsigned(_)) => Column::Unsigned(Vec::with_capacity(n)),
            Some(FieldValue::Boolean(_)) => Column::Boolean(Vec::with_capacity(n)),
            Some(FieldValue::String(_)) => Column::String(Vec::with_capacity(n)),
        };
        for (_, value) in chunk {
            match (&mut column, value) {
                (Column::Float(c), FieldValue::Float(v)) => c.push(*v),
                (Column::Integer(c), FieldValue::Integer(v)) => c.push(*v),
                (Column::Unsigned(c), FieldValue::Unsigned(v)) => c.push(*v),
                (Column::Boolean(c), FieldValue::Boolean(v)) => c.push(*v),
                (Column::String(c), FieldValue::String(v)) => c.push(v),
                _ => return None,
            }
        }
        if let Column::String(c) = &column
            && c.iter().map(|s| s.len()).sum::<usize>() > MAX_TYPED_STRING_BYTES
        {
            return None;
        }
        Some(column)
    }

    fn type_bits(&self) -> u8 {
        match self {
            Column::Float(_) => FLOAT,
            Column::Integer(_) => INTEGER,
            Column::Unsigned(_) => UNSIGNED,
            Column::Boolean(_) => BOOLEAN,
            Column::String(_) => STRING,
        }
    }
}

/// A typed layout of `chunk`, whose values are `column`.
fn encode_typed(chunk: &[&Sample], column: &Column<'_>) -> Vec<u8> {
    let mut out = format::header(CHUNK_VERSION);
    let at = out.len();
    let mut layout = column.type_bits();
    out.push(layout);
    varint::put(&mut out, chunk.len() as u64);
    if chunk.is_empty() {
        return out;
    }
    let times: Vec<Nanos> = chunk.iter().map(|(ts, _)| *ts).collect();
    if let Some(gap) = even_gap(&times) {
        // 8 bytes and a varint: never more than the plain times (which hold that gap, as
        // its change from 0, and a byte per later point), nor pco's (some 15 bytes of
        // metadata before the first time).
        layout |= TIMES_EVEN;
        out.extend_from_slice(&times[0].to_le_bytes());
        varint::put(&mut out, gap);
    } else {
        let mut plain = Vec::with_capacity(8 + times.len());
        plain_times(&times, &mut plain);
        match pco_encode(&times) {
            Some(pco) if varint::len(pco.len() as u64) + pco.len() < plain.len() => {
                layout |= TIMES_PCO;
                varint::put(&mut out, pco.len() as u64);
                out.extend_from_slice(&pco);
            }
            _ => out.extend_from_slice(&plain),
        }
    }
    let way = match column {
        Column::Float(values) => match decimal(values) {
            Some((places, digits)) => {
                // The places byte, then the digits' column.
                let pco = pco_encode(&digits).map(|pco| [&[places][..], &pco].concat());
                let packed = packed_encode(digits.iter().map(|d| *d as u64))
                    .map(|packed| [&[places][..], &packed].concat());
                let way = numbers(values, pco, packed, &mut out, xors);
                if way != Way::Plain {
                    layout |= VALUES_DECIMAL;
                }
                way
            }
            None => numbers(values, pco_encode(values), None, &mut out, xors),
        },
        Column::Integer(values) => {
            let packed = packed_encode(values.iter().map(|i| *i as u64));
            numbers(values, pco_encode(values), packed, &mut out, |v, out| {
                deltas(v.iter().map(|i| *i as u64), out);
            })
        }
        Column::Unsigned(values) => {
            let packed = packed_encode(values.iter().copied());
            numbers(values, pco_encode(values), packed, &mut out, |v, out| {
                deltas(v.iter().copied(), out);
            })
        }
        Column::Boolean(values) => {
            booleans(values, &mut out);
            Way::Plain
        }
        Column::String(values) => {
            strings(values, &mut out);
            Way::Plain
        }
    };
    layout |= match way {
        Way::Plain => 0,
        Way::Pco => VALUES_PCO,
        Way::Packed => VALUES_PACKED,
    };
    out[at] = layout;
    out
}

/// How a chunk's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The plain layout of their type.
    Plain,
    /// pco's column.
    Pco,
    /// Packed deltas.
    Packed,
}

/// Writes `values` as `packed` (when they have it) unless it is more than [`PACKED_SLACK`]
/// bigger than the smaller of `pco` (their pco column, when they have one) and `plain`;
/// otherwise as that smaller one.
fn numbers<T>(
    values: &[T],
    pco: Option<Vec<u8>>,
    packed: Option<Vec<u8>>,
    out: &mut Vec<u8>,
    plain: impl Fn(&[T], &mut Vec<u8>),
) -> Way {
    let mut written = Vec::new();
    plain(values, &mut written);
    let (way, smallest) = match pco {
        Some(pco) if pco.len() < written.len() => (Way::Pco, pco),
        _ => (Way::Plain, written),
    };
    let (slack, of) = PACKED_SLACK;
    match packed {
        Some(packed) if packed.len() * of <= smallest.len() * slack => {
            out.extend_from_slice(&packed);
            Way::Packed
        }
        _ => {
            out.extend_from_slice(&smallest);
            way
        }
    }
}

/// `numbers` as packed deltas; none below [`PCO_FROM`] numbers, where plain is as small.
fn packed_encode(numbers: impl ExactSizeIterator<Item = u64>) -> Option<Vec<u8>> {
    if numbers.len() < PCO_FROM {
        return None;
    }
    let numbers: Vec<u64> = numbers.collect();
    let mut out = Vec::new();
    packed::encode(&numbers, &mut out);
    Some(out)
}

/// `values` as decimals, when each is one of at most [`MAX_PLACES`] places: how many
/// places, and each one's digits (the value times 10 to that power). Each must read back
/// to the same bits, so -0.0, NaN, infinities and values of more places (0.1 + 0.2) have
/// none. Telemetry is mostly decimals (a sensor's two places, a percentage), and pco
/// decodes integers in some 60 % of the time it takes for floats of the same steps (its
/// float mode adds a second column of adjustments; a throwaway driver, 1,024 values of a
/// walk of two places, 5.5 against 8.8 ns a value), into 10 % fewer bytes.
fn decimal(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    // The places the values need: each reads back at the most any of them needs.
    let mut places = 0;
    for v in values {
        while digits(*v, places).is_none() {
            places += 1;
            if places > MAX_PLACES {
                return None;
            }
        }
    }
    let digits: Option<Vec<i64>> = values.iter().map(|v| digits(*v, places)).collect();
    Some((places as u8, digits?))
}

/// `v`'s digits at `places` decimal places, when they read back to `v` exactly.
fn digits(v: f64, places: usize) -> Option<i64> {
    const EXACT: f64 = (1u64 << 53) as f64;
    let scale = POWERS_OF_TEN[places];
    let m = (v * scale).round();
    // In range, m is an integer exactly representable in both f64 and i64. What is checked
    // is what the decoder computes, from the integer: -0.0's digits read back as 0.0.
    let digits = m as i64;
    (m.abs() <= EXACT && (digits as f64 / scale).to_bits() == v.to_bits()).then_some(digits)
}

/// The gap between each two of `times`, when there are at least two and it is always the
/// same, and not 0 (the decoder refuses equal times in this layout; the store never writes
/// them, but the plain layouts carry them).
fn even_gap(times: &[Nanos]) -> Option<u64> {
    let [first, second, ..] = times else {
        return None;
    };
    // Wrapping, as the plain times: sorted unique times have gaps in u64.
    let gap = second.wrapping_sub(*first) as u64;
    (gap > 0
        && times
            .windows(2)
            .all(|w| w[1].wrapping_sub(w[0]) as u64 == gap))
    .then_some(gap)
}

/// The plain times: the first, then each gap's change from the one before.
fn plain_times(times: &[Nanos], out: &mut Vec<u8>) {
    let Some((first, rest)) = times.split_first() else {
        return;
    };
    out.extend_from_slice(&first.to_le_bytes());
    let (mut previous, mut gap) = (*first, 0u64);
    for ts in rest {
        // Wrapping: a chunk the encoder is given may span the whole i64 range, whose gaps
        // and their changes pass i64; the decoder's wrapping sums give them back.
        let next = ts.wrapping_sub(previous) as u64;
        varint::put(out, varint::zigzag(next.wrapping_sub(gap) as i64));
        (previous, gap) = (*ts, next);
    }
}

/// The first float's bits, then each one's XOR with the one before, without its zero bytes
/// at either end.
fn xors(values: &[f64], out: &mut Vec<u8>) {
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    let mut previous = first.to_bits();
    out.extend_from_slice(&previous.to_le_bytes());
    for f in rest {
        let bits = f.to_bits();
        let xor = bits ^ previous;
        previous = bits;
        if xor == 0 {
            out.push(0);
            continue;
        }
        let (top, bottom) = (xor.leading_zeros() / 8, xor.trailing_zeros() / 8);
        out.push((1 + 8 * top + bottom) as u8);
        let len = (8 - top - bottom) as usize;
        out.extend_from_slice(&(xor >> (8 * bottom)).to_le_bytes()[..len]);
    }
}

/// Each value's difference from the one before (the first's from 0), in wrapping u64
/// arithmetic (an i64 as its two's complement), as zigzag varints.
fn deltas(values: impl Iterator<Item = u64>, out: &mut Vec<u8>) {
    let mut previous = 0u64;
    for v in values {
        varint::put(out, varint::zigzag(v.wrapping_sub(previous) as i64));
        previous = v;
    }
}

/// The first value, then the length of every run.
fn booleans(values: &[bool], out: &mut Vec<u8>) {
    if let Some(first) = values.first() {
        out.push(u8::from(*first));
    }
    for run in values.chunk_by(|a, b| a == b) {
        varint::put(out, run.len() as u64);
    }
}

/// The dictionary, then each run's index and length.
fn strings(values: &[&str], out: &mut Vec<u8>) {
    let mut dictionary: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u64> = HashMap::new();
    let indices: Vec<u64> = values
        .iter()
        .map(|s| {
            *index.entry(s).or_insert_with(|| {
                dictionary.push(s);
                dictionary.len() as u64 - 1
            })
        })
        .collect();
    varint::put(out, dictionary.len() as u64);
    for s in &dictionary {
        varint::put(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    for run in indices.chunk_by(|a, b| a == b) {
        varint::put(out, run[0]);
        varint::put(out, run.len() as u64);
    }
}

/// pco's wrapped format of `numbers` (one page); none below [`PCO_FROM`] numbers, or if
/// pco refuses them.
fn pco_encode<T: Number>(numbers: &[T]) -> Option<Vec<u8>> {
    if numbers.len() < PCO_FROM {
        return None;
    }
    let config = ChunkConfig::default()
        .with_compression_level(PCO_LEVEL)
        // Our columns are times, counters and walks: consecutive differences are what
        // compress, and trying every delta encoding (pco's default) was most of its time.
        // The mode (float multiples and decimals, integer multiples) is still detected.
        .with_delta_spec(DeltaSpec::TryConsecutive(1))
        .with_paging_spec(PagingSpec::Exact(vec![numbers.len()]));
    let file = FileCompressor::default();
    let out = file.write_header(Vec::new()).ok()?;
    let mut chunk = file.chunk_compressor(numbers, &config).ok()?;
    let out = chunk.write_meta(out).ok()?;
    chunk.write_page(0, out).ok()
}

/// The generic layout: version 1's body without its first gap.
fn encode_generic(chunk: &[&Sample]) -> Vec<u8> {
    let (first, gaps) = gaps(chunk);
    let chunk = ChunkRef {
        first,
        gaps: gaps.get(1..).unwrap_or_default(),
        values: Values(chunk),
    };
    let mut out = format::header(CHUNK_VERSION);
    out.push(GENERIC);
    // Serializing into a Vec can't fail for these types (no maps, no non-string keys).
    postcard::to_extend(&chunk, out).unwrap_or_default()
}

/// The length of [`encode_generic`]'s bytes, without writing them: postcard's encoding of
/// those types, counted.
fn generic_len(chunk: &[&Sample]) -> usize {
    let first = chunk.first().map_or(0, |(ts, _)| *ts);
    let gaps: usize = chunk
        .windows(2)
        .map(|w| varint::len(w[1].0.abs_diff(w[0].0)))
        .sum();
    let values: usize = chunk
        .iter()
        .map(|(_, v)| {
            // The variant's index (one byte), then the value.
            1 + match v {
                FieldValue::Float(_) => 8,
                FieldValue::Integer(i) => varint::len(varint::zigzag(*i)),
                FieldValue::Unsigned(u) => varint::len(*u),
                FieldValue::Boolean(_) => 1,
                FieldValue::String(s) => varint::len(s.len() as u64) + s.len(),
            }
        })
        .sum();
    let n = chunk.len() as u64;
    format::header(CHUNK_VERSION).len()
        + 1
        + varint::len(varint::zigzag(first))
        + varint::len(n.saturating_sub(1))
        + gaps
        + varint::len(n)
        + values
}

/// Encodes one chunk in format 1, as releases before format 2 wrote it: to compare with
/// (`benches/chunks.rs`) and to test that such chunks still read.
pub fn encode_v1(chunk: &[&Sample]) -> Vec<u8> {
    let (first, gaps) = gaps(chunk);
    let chunk = ChunkRef {
        first,
        gaps: &gaps[..],
        values: Values(chunk),
    };
    postcard::to_extend(&chunk, format::header(VERSION_1)).unwrap_or_default()
}

/// Encodes one chunk in the legacy format, for rewriting a legacy chunk in place.
pub fn encode_legacy(chunk: &[&Sample]) -> Vec<u8> {
    let (first, gaps) = gaps(chunk);
    let chunk = ChunkRef {
        first,
        gaps: &gaps[..],
        values: LegacyValues(chunk),
    };
    postcard::to_allocvec(&chunk).unwrap_or_default()
}

#[derive(serde::Serialize)]
struct ChunkRef<'a, V> {
    first: Nanos,
    gaps: &'a [u64],
    values: V,
}

/// The values of borrowed samples, as stored values, without copying them.
struct Values<'a>(&'a [&'a Sample]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, v)| ValueOut(v)))
    }
}

/// The values of borrowed samples as the WIT types serialize (the legacy format).
struct LegacyValues<'a>(&'a [&'a Sample]);

impl Serialize for LegacyValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, v)| v))
    }
}

#[derive(serde::Deserialize)]
struct ChunkOwned<V> {
    first: Nanos,
    gaps: Vec<u64>,
    values: Vec<V>,
}

/// Gaps between the sorted times of `chunk`, from its first (so the first is 0).
fn gaps(chunk: &[&Sample]) -> (Nanos, Vec<u64>) {
    let first = chunk.first().map_or(0, |(ts, _)| *ts);
    let mut previous = first;
    let gaps = chunk
        .iter()
        .map(|(ts, _)| {
            let gap = ts.abs_diff(previous);
            previous = *ts;
            gap
        })
        .collect();
    (first, gaps)
}

/// What a decoding error names.
const WHAT: &str = "chunk";

/// Decodes [`encode`], and chunks of format 1.
///
/// # Errors
/// Another version, no header, or bytes that are not a chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, FormatError> {
    let decoded = match format::body(WHAT, bytes, VERSION_1) {
        Ok(body) => decode_v1(body),
        Err(_) => decode_v2(format::body(WHAT, bytes, CHUNK_VERSION)?),
    };
    decoded.map_err(|message| FormatError::Decode {
        what: WHAT,
        message,
    })
}

/// Format 1's body: postcard of the first time, the gaps, and the values.
fn decode_v1(body: &[u8]) -> Result<Vec<Sample>, String> {
    let chunk: ChunkOwned<format::Value> = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    times(chunk.first, chunk.gaps, chunk.values)
        .ok_or_else(|| "gaps and values disagree, or times pass i64::MAX".into())
}

/// Decodes [`encode_legacy`]; none when the bytes are not a chunk.
pub fn decode_legacy(bytes: &[u8]) -> Option<Vec<Sample>> {
    let chunk: ChunkOwned<FieldValue> = postcard::from_bytes(bytes).ok()?;
    times(chunk.first, chunk.gaps, chunk.values)
}

/// Samples from a first time, the gaps between times, and values.
fn times<V: Into<FieldValue>>(first: Nanos, gaps: Vec<u64>, values: Vec<V>) -> Option<Vec<Sample>> {
    if gaps.len() != values.len() {
        return None;
    }
    let mut ts = first;
    gaps.into_iter()
        .zip(values)
        .map(|(gap, value)| {
            // Gaps of a real chunk never pass i64::MAX; bytes whose gaps do are not one.
            ts = ts.checked_add_unsigned(gap)?;
            Some((ts, value.into()))
        })
        .collect()
}

/// A chunk's times and its values as numbers, as [`NumberDecoder::decode`] reads them.
pub type Numbers<'a> = (&'a [Nanos], &'a [f64]);

/// Decodes chunks of numbers (floats, integers or unsigned integers, as
/// [`FieldValue::as_f64`] reads them) into their times and values, without a
/// [`FieldValue`] per point: a query's aggregation reads nothing else. It keeps its
/// buffers from one chunk to the next, so a read of many chunks allocates once: fresh
/// buffers per chunk (allocated, zeroed, freed) were a tenth of an aggregation's time.
#[derive(Debug, Default)]
pub struct NumberDecoder {
    times: Vec<Nanos>,
    values: Vec<f64>,
    integers: Vec<i64>,
    unsigned: Vec<u64>,
}

impl NumberDecoder {
    /// The times and values of `bytes`. None when the chunk holds other values, or is of
    /// format 1 or the generic layout (decode those with [`decode`]).
    ///
    /// # Errors
    /// Bytes that are not a chunk.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Option<Numbers<'_>>, FormatError> {
        let Ok(body) = format::body(WHAT, bytes, CHUNK_VERSION) else {
            return Ok(None);
        };
        match self.numbers(body) {
            Ok(true) => Ok(Some((&self.times, &self.values))),
            Ok(false) => Ok(None),
            Err(message) => Err(FormatError::Decode {
                what: WHAT,
                message,
            }),
        }
    }

    /// Decodes format 2's `body` into the buffers; whether it holds numbers.
    fn numbers(&mut self, body: &[u8]) -> Result<bool, String> {
        let Some(Typed {
            kind,
            way,
            decimal,
            mut r,
        }) = typed(body, &mut self.times)?
        else {
            return Ok(false);
        };
        let n = self.times.len();
        let values = &mut self.values;
        values.clear();
        match (kind, way) {
            (FLOAT, Way::Packed) if decimal => {
                let scale = places(&mut r)?;
                packed_decode_into(r.0, n, &mut self.unsigned)?;
                values.extend(self.unsigned.iter().map(|m| *m as i64 as f64 / scale));
            }
            (FLOAT, _) if decimal => {
                let scale = places(&mut r)?;
                pco_decode_into(r.0, n, &mut self.integers)?;
                values.extend(self.integers.iter().map(|m| *m as f64 / scale));
            }
            (FLOAT, Way::Pco) => pco_decode_into(r.0, n, values)?,
            (INTEGER, Way::Pco) => {
                pco_decode_into(r.0, n, &mut self.integers)?;
                values.extend(self.integers.iter().map(|v| *v as f64));
            }
            (UNSIGNED, Way::Pco) => {
                pco_decode_into(r.0, n, &mut self.unsigned)?;
                values.extend(self.unsigned.iter().map(|v| *v as f64));
            }
            (INTEGER, Way::Packed) => {
                packed_decode_into(r.0, n, &mut self.unsigned)?;
                values.extend(self.unsigned.iter().map(|v| *v as i64 as f64));
            }
            (UNSIGNED, Way::Packed) => {
                packed_decode_into(r.0, n, &mut self.unsigned)?;
                values.extend(self.unsigned.iter().map(|v| *v as f64));
            }
            (FLOAT, _) => *values = xors_of(&mut r, n)?,
            (INTEGER, _) => values.extend(undelta(&mut r, n)?.map(|v| v as i64 as f64)),
            (UNSIGNED, _) => values.extend(undelta(&mut r, n)?.map(|v| v as f64)),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The first time of a chunk in format 2 where it reads without decoding (plain or evenly
/// spaced times): a read passes over a chunk that starts after its range. A chunk is found
/// by its last time, and one that spans [`MAX_SPAN`] may start hours after the range it
/// was found for; decoding those was most of a narrow read's time.
pub fn first_time(bytes: &[u8]) -> Option<Nanos> {
    let body = format::body(WHAT, bytes, CHUNK_VERSION).ok()?;
    let mut r = Reader(body);
    let layout = r.byte().ok()?;
    if !is_typed(layout) || layout & TIMES_PCO != 0 || r.varint().ok()? == 0 {
        return None;
    }
    r.array().ok().map(Nanos::from_le_bytes)
}

/// Whether `layout` is one of the typed layouts: a known type, one way of storing the
/// times, and one of storing the values that fits their type.
fn is_typed(layout: u8) -> bool {
    layout & TYPE <= STRING
        && layout & (TIMES_PCO | TIMES_EVEN) != TIMES_PCO | TIMES_EVEN
        && layout & (VALUES_PCO | VALUES_PACKED) != VALUES_PCO | VALUES_PACKED
        && (layout & VALUES_DECIMAL == 0
            || layout & TYPE == FLOAT && layout & (VALUES_PCO | VALUES_PACKED) != 0)
        && (layout & VALUES_PACKED == 0
            || layout & VALUES_DECIMAL != 0
            || matches!(layout & TYPE, INTEGER | UNSIGNED))
}

/// A typed layout's parts: its values' type, how they are stored, whether they are
/// decimals, and the reader at the values.
struct Typed<'a> {
    kind: u8,
    way: Way,
    decimal: bool,
    r: Reader<'a>,
}

/// The layout of format 2's `body`, its times put in `times`; none for the generic layout
/// (or no points).
fn typed<'a>(body: &'a [u8], times: &mut Vec<Nanos>) -> Result<Option<Typed<'a>>, String> {
    times.clear();
    let mut r = Reader(body);
    let layout = r.byte()?;
    if layout == GENERIC {
        return Ok(None);
    }
    let kind = layout & TYPE;
    let numeric = matches!(kind, FLOAT | INTEGER | UNSIGNED);
    if !is_typed(layout) {
        return Err(format!("unknown layout {layout:#04x}"));
    }
    if layout & VALUES_PCO != 0 && !numeric {
        return Err(format!("layout {layout:#04x}: pco of non-numbers"));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| "count past usize")?;
    if n > MAX_TYPED {
        return Err(format!("{n} points, more than a typed chunk holds"));
    }
    if n == 0 {
        return r.end().map(|()| None);
    }
    if layout & TIMES_PCO != 0 {
        let len = usize::try_from(r.varint()?).map_err(|_| "length past usize")?;
        pco_decode_into(r.take(len)?, n, times)?;
        if times.windows(2).any(|w| w[0] > w[1]) {
            return Err("times out of order".into());
        }
    } else if layout & TIMES_EVEN != 0 {
        decode_even_times(&mut r, n, times)?;
    } else {
        decode_plain_times(&mut r, n, times)?;
    }
    Ok(Some(Typed {
        kind,
        way: if layout & VALUES_PCO != 0 {
            Way::Pco
        } else if layout & VALUES_PACKED != 0 {
            Way::Packed
        } else {
            Way::Plain
        },
        decimal: layout & VALUES_DECIMAL != 0,
        r,
    }))
}

/// Format 2's body: the layout byte, then what it says.
fn decode_v2(body: &[u8]) -> Result<Vec<Sample>, String> {
    let mut times = Vec::new();
    let Some(Typed {
        kind,
        way,
        decimal,
        mut r,
    }) = typed(body, &mut times)?
    else {
        return match body.first() {
            Some(&GENERIC) => decode_generic(&body[1..]),
            _ => Ok(Vec::new()),
        };
    };
    let n = times.len();
    let values: Vec<FieldValue> = match (kind, way) {
        (FLOAT, _) if decimal => {
            let scale = places(&mut r)?;
            let float = |m: i64| FieldValue::Float(m as f64 / scale);
            match way {
                Way::Packed => packed_decode(r.0, n)?
                    .into_iter()
                    .map(|m| float(m as i64))
                    .collect(),
                _ => pco_decode::<i64>(r.0, n)?.into_iter().map(float).collect(),
            }
        }
        (FLOAT, Way::Pco) => pco_decode::<f64>(r.0, n)?
            .into_iter()
            .map(FieldValue::Float)
            .collect(),
        (INTEGER, Way::Pco) => pco_decode::<i64>(r.0, n)?
            .into_iter()
            .map(FieldValue::Integer)
            .collect(),
        (UNSIGNED, Way::Pco) => pco_decode::<u64>(r.0, n)?
            .into_iter()
            .map(FieldValue::Unsigned)
            .collect(),
        (INTEGER, Way::Packed) => packed_decode(r.0, n)?
            .into_iter()
            .map(|v| FieldValue::Integer(v as i64))
            .collect(),
        (UNSIGNED, Way::Packed) => packed_decode(r.0, n)?
            .into_iter()
            .map(FieldValue::Unsigned)
            .collect(),
        (FLOAT, _) => xors_of(&mut r, n)?
            .into_iter()
            .map(FieldValue::Float)
            .collect(),
        (INTEGER, _) => undelta(&mut r, n)?
            .map(|v| FieldValue::Integer(v as i64))
            .collect(),
        (UNSIGNED, _) => undelta(&mut r, n)?.map(FieldValue::Unsigned).collect(),
        (BOOLEAN, _) => decode_booleans(&mut r, n)?,
        _ => decode_strings(&mut r, n)?,
    };
    Ok(times.into_iter().zip(values).collect())
}

/// The power of ten that the decimal layout's places byte says its digits are divided by.
fn places(r: &mut Reader<'_>) -> Result<f64, String> {
    let places = r.byte()?;
    POWERS_OF_TEN
        .get(usize::from(places))
        .copied()
        .ok_or_else(|| format!("decimals of {places} places, more than {MAX_PLACES}"))
}

/// The plain times of `n` points.
fn decode_plain_times(r: &mut Reader<'_>, n: usize, times: &mut Vec<Nanos>) -> Result<(), String> {
    let mut ts = Nanos::from_le_bytes(r.array()?);
    times.reserve(n);
    times.push(ts);
    let mut gap = 0u64;
    for _ in 1..n {
        gap = gap.wrapping_add(varint::unzigzag(r.varint()?) as u64);
        // The gap is a u64: times only go forward, and never past i64::MAX.
        ts = ts.checked_add_unsigned(gap).ok_or("times pass i64::MAX")?;
        times.push(ts);
    }
    Ok(())
}

/// `n` evenly spaced times from the first and the gap.
fn decode_even_times(r: &mut Reader<'_>, n: usize, times: &mut Vec<Nanos>) -> Result<(), String> {
    let first = Nanos::from_le_bytes(r.array()?);
    let gap = r.varint()?;
    if gap == 0 && n > 1 {
        return Err("evenly spaced times 0 apart".into());
    }
    // The last must not pass i64::MAX: then no time before it does.
    let span = gap
        .checked_mul(n as u64 - 1)
        .and_then(|span| first.checked_add_unsigned(span));
    if span.is_none() {
        return Err("times pass i64::MAX".into());
    }
    // Wrapping sums are exact: the last time fits in i64, so every one before it does.
    times.extend((0..n as u64).map(|i| first.wrapping_add(gap.wrapping_mul(i) as i64)));
    Ok(())
}

/// `n` floats from the first's bits and their XORs.
fn xors_of(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, String> {
    let mut bits = u64::from_le_bytes(r.array()?);
    let mut values = Vec::with_capacity(n);
    values.push(f64::from_bits(bits));
    for _ in 1..n {
        let zeros = r.byte()?;
        if zeros != 0 {
            let (top, bottom) = ((zeros - 1) / 8, (zeros - 1) % 8);
            if top + bottom >= 8 {
                return Err(format!("an XOR of {zeros}"));
            }
            let mut xor = [0; 8];
            let len = usize::from(8 - top - bottom);
            xor[..len].copy_from_slice(r.take(len)?);
            bits ^= u64::from_le_bytes(xor) << (8 * bottom);
        }
        values.push(f64::from_bits(bits));
    }
    r.end().map(|()| values)
}

/// `n` values from their wrapping differences; the reader must end with them.
fn undelta(r: &mut Reader<'_>, n: usize) -> Result<impl Iterator<Item = u64>, String> {
    let mut values = Vec::with_capacity(n);
    let mut previous = 0u64;
    for _ in 0..n {
        previous = previous.wrapping_add(varint::unzigzag(r.varint()?) as u64);
        values.push(previous);
    }
    r.end()?;
    Ok(values.into_iter())
}

/// `n` booleans from their first value and runs.
fn decode_booleans(r: &mut Reader<'_>, n: usize) -> Result<Vec<FieldValue>, String> {
    let mut current = match r.byte()? {
        0 => false,
        1 => true,
        other => return Err(format!("boolean {other}")),
    };
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        let run = run(r.varint()?, values.len(), n)?;
        values.extend(std::iter::repeat_n(FieldValue::Boolean(current), run));
        current = !current;
    }
    r.end().map(|()| values)
}

/// `n` strings from their dictionary and runs.
fn decode_strings(r: &mut Reader<'_>, n: usize) -> Result<Vec<FieldValue>, String> {
    let size = r.varint()?;
    if size > n as u64 {
        return Err(format!("{size} distinct strings in {n} points"));
    }
    let dictionary = (0..size)
        .map(|_| {
            let len = usize::try_from(r.varint()?).map_err(|_| "length past usize")?;
            let s = std::str::from_utf8(r.take(len)?).map_err(|e| e.to_string())?;
            Ok(s.to_owned())
        })
        .collect::<Result<Vec<String>, String>>()?;
    let mut values = Vec::with_capacity(n);
    let mut bytes = 0usize;
    while values.len() < n {
        let index = r.varint()?;
        let s = usize::try_from(index)
            .ok()
            .and_then(|i| dictionary.get(i))
            .ok_or_else(|| format!("string {index} of {size}"))?;
        let run = run(r.varint()?, values.len(), n)?;
        bytes = bytes.saturating_add(s.len().saturating_mul(run));
        if bytes > MAX_TYPED_STRING_BYTES {
            return Err(format!(
                "more than {MAX_TYPED_STRING_BYTES} bytes of strings"
            ));
        }
        values.extend(std::iter::repeat_n(FieldValue::String(s.clone()), run));
    }
    r.end().map(|()| values)
}

/// A run of `len` points after `done` of `n`: at least one, and within the count.
fn run(len: u64, done: usize, n: usize) -> Result<usize, String> {
    match usize::try_from(len) {
        Ok(len) if len > 0 && len <= n - done => Ok(len),
        _ => Err(format!("a run of {len} after {done} of {n} points")),
    }
}

/// The generic layout: postcard of the first time, the gaps after it, and the values.
fn decode_generic(body: &[u8]) -> Result<Vec<Sample>, String> {
    let (chunk, rest): (ChunkOwned<format::Value>, _) =
        postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes past the values", rest.len()));
    }
    if chunk.values.is_empty() || chunk.gaps.len() + 1 != chunk.values.len() {
        return Err("gaps and values disagree".into());
    }
    let gaps = std::iter::once(0).chain(chunk.gaps).collect();
    times(chunk.first, gaps, chunk.values).ok_or_else(|| "times pass i64::MAX".into())
}

/// `n` numbers of pco's wrapped format (one page), decoded into a buffer of `n`: what a
/// hostile count in the bytes can make it allocate is bounded by ours.
fn pco_decode<T: Number>(bytes: &[u8], n: usize) -> Result<Vec<T>, String> {
    let mut numbers = Vec::new();
    pco_decode_into(bytes, n, &mut numbers)?;
    Ok(numbers)
}

/// [`pco_decode`] into `numbers`, which it resizes to `n`.
fn pco_decode_into<T: Number>(bytes: &[u8], n: usize, numbers: &mut Vec<T>) -> Result<(), String> {
    let bad = |e: pco::errors::PcoError| format!("pco: {e}");
    let (file, rest) = FileDecompressor::new(bytes).map_err(bad)?;
    let (mut chunk, rest) = file.chunk_decompressor::<T, _>(rest).map_err(bad)?;
    let mut page = chunk.page_decompressor(rest, n).map_err(bad)?;
    // Every number is overwritten (or the decode fails): a reused buffer needs no zeroing.
    numbers.resize(n, T::default());
    let progress = page.read(numbers).map_err(bad)?;
    if progress.n_processed != n || !progress.finished {
        return Err(format!("pco: {} of {n} numbers", progress.n_processed));
    }
    Ok(())
}

/// `n` packed numbers, which must end the chunk.
fn packed_decode(bytes: &[u8], n: usize) -> Result<Vec<u64>, String> {
    let mut numbers = Vec::new();
    packed_decode_into(bytes, n, &mut numbers)?;
    Ok(numbers)
}

/// [`packed_decode`] into `numbers`.
fn packed_decode_into(bytes: &[u8], n: usize, numbers: &mut Vec<u64>) -> Result<(), String> {
    Reader(packed::decode_into(bytes, n, numbers)?).end()
}

/// Bytes being decoded.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (first, rest) = self.0.split_first().ok_or("truncated")?;
        self.0 = rest;
        Ok(*first)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self.0.split_at_checked(len).ok_or("truncated")?;
        self.0 = rest;
        Ok(taken)
    }

    fn array(&mut self) -> Result<[u8; 8], String> {
        let mut array = [0; 8];
        array.copy_from_slice(self.take(8)?);
        Ok(array)
    }

    /// A LEB128 varint of at most 64 bits.
    fn varint(&mut self) -> Result<u64, String> {
        varint::take(&mut self.0).map_err(String::from)
    }

    fn end(&self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            left => Err(format!("{left} bytes past the values")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cut_sorts_keeps_the_last_rewrite_and_bounds_chunks() {
        let mut samples: Vec<Sample> = vec![
            (30, FieldValue::Float(3.0)),
            (10, FieldValue::Float(1.0)),
            (30, FieldValue::Float(3.5)),
            (-5, FieldValue::String("neg".into())),
        ];
        let chunks = cut(&samples);
        assert_eq!(chunks.len(), 1);
        let times: Vec<_> = chunks[0].iter().map(|(ts, v)| (*ts, v.clone())).collect();
        assert_eq!(
            times,
            vec![
                (-5, FieldValue::String("neg".into())),
                (10, FieldValue::Float(1.0)),
                (30, FieldValue::Float(3.5)),
            ]
        );

        // A point past the span, and more than MAX_POINTS points, start new chunks.
        samples.push((30 + MAX_SPAN, FieldValue::Boolean(true)));
        samples.extend((0..=MAX_POINTS as i64).map(|i| (3 * MAX_SPAN + i, FieldValue::Integer(i))));
        let sizes: Vec<_> = cut(&samples).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 1, MAX_POINTS, 1]);
        for chunk in cut(&samples) {
            assert!(chunk.last().expect("non-empty").0 - chunk[0].0 <= MAX_SPAN);
        }
    }

    /// Equal, with floats compared by bits (NaN payloads and -0.0 included).
    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|((t, v), (u, w))| {
                t == u
                    && match (v, w) {
                        (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
                        _ => v == w,
                    }
            })
    }

    fn refs(samples: &[Sample]) -> Vec<&Sample> {
        samples.iter().collect()
    }

    /// Encodes `samples` in both formats and checks that both decode to them, and that
    /// format 2 is no bigger; returns format 2's bytes.
    fn round_trip(samples: &[Sample]) -> Vec<u8> {
        let chunk = refs(samples);
        let (v1, v2) = (encode_v1(&chunk), encode(&chunk));
        let decoded = decode(&v2).expect("format 2 decodes");
        assert!(
            same(&decoded, samples),
            "format 2: {samples:?} became {decoded:?}"
        );
        let decoded = decode(&v1).expect("format 1 decodes");
        assert!(
            same(&decoded, samples),
            "format 1: {samples:?} became {decoded:?}"
        );
        assert!(
            v2.len() <= v1.len(),
            "{} > {} bytes: {samples:?}",
            v2.len(),
            v1.len()
        );
        // As numbers: the same times and values, bit for bit, wherever all are numbers in
        // a typed layout.
        match decode_numbers(&v2).expect("format 2 decodes as numbers") {
            Some((times, values)) => {
                assert_eq!(times.len(), samples.len());
                assert_eq!(values.len(), samples.len());
                for ((t, v), (ts, value)) in times.iter().zip(&values).zip(samples) {
                    assert_eq!(t, ts);
                    assert_eq!(
                        value.as_f64().map(f64::to_bits),
                        Some(v.to_bits()),
                        "{value:?}"
                    );
                }
            }
            None => assert!(
                samples.is_empty()
                    || layout(&v2) == GENERIC
                    || samples.iter().any(|(_, v)| v.as_f64().is_none()),
                "numbers in a typed layout: {samples:?}"
            ),
        }
        assert_eq!(decode_numbers(&v1).expect("format 1"), None);
        v2
    }

    /// The numbers of `bytes`, by a decoder of their own.
    #[allow(clippy::type_complexity, reason = "a test's copy of `Numbers`")]
    fn decode_numbers(bytes: &[u8]) -> Result<Option<(Vec<Nanos>, Vec<f64>)>, FormatError> {
        let mut decoder = NumberDecoder::default();
        let numbers = decoder.decode(bytes)?;
        Ok(numbers.map(|(times, values)| (times.to_vec(), values.to_vec())))
    }

    /// What [`NumberDecoder`] makes of `bytes`, when anything, [`decode`] makes too.
    pub(crate) fn numbers_agree(bytes: &[u8]) {
        let Ok(Some((times, values))) = decode_numbers(bytes) else {
            return;
        };
        let samples = decode(bytes).expect("decodes as numbers, so as samples");
        assert_eq!(samples.len(), times.len());
        for ((ts, value), (t, v)) in samples.iter().zip(times.iter().zip(&values)) {
            assert_eq!(ts, t);
            assert_eq!(value.as_f64().map(f64::to_bits), Some(v.to_bits()));
        }
    }

    /// The layout byte of format 2 `bytes`.
    fn layout(bytes: &[u8]) -> u8 {
        assert_eq!(bytes[..2], [b'S', CHUNK_VERSION]);
        bytes[2]
    }

    const SECOND: Nanos = 1_000_000_000;
    /// 2026-01-01T00:00:00Z.
    const T0: Nanos = 1_767_225_600 * SECOND;

    /// `n` points 10 s apart from T0, of values `value(i)`.
    fn every_10s(n: usize, mut value: impl FnMut(i64) -> FieldValue) -> Vec<Sample> {
        (0..n as i64)
            .map(|i| (T0 + i * 10 * SECOND, value(i)))
            .collect()
    }

    #[test]
    fn every_value_type_round_trips_in_the_layout_that_fits_it() {
        let walk = |i: i64| FieldValue::Float((5_000 + (i * 37) % 201 - 100) as f64 / 100.0);
        // Steps of 0.01 and one of 10.01 in every hundred: pco's entropy coding takes about
        // a bit a step, packing the rare jump 11 bits for its whole block.
        let jumps = |i: i64| FieldValue::Float((5_000 + i + 1_000 * (i / 100)) as f64 / 100.0);
        // Times off the 10 s grid by up to ±2 ms: no longer evenly spaced.
        let jitter = |samples: Vec<Sample>| -> Vec<Sample> {
            samples
                .into_iter()
                .enumerate()
                .map(|(i, (ts, v))| (ts + (i as i64 * 7_919 % 4_001 - 2_000) * 1_000_000, v))
                .collect()
        };
        let cases: Vec<(Vec<Sample>, u8)> = vec![
            // Full chunks, evenly spaced: the first time and the gap, pco numbers (floats
            // of two places as decimals).
            (
                every_10s(MAX_POINTS, jumps),
                FLOAT | TIMES_EVEN | VALUES_PCO | VALUES_DECIMAL,
            ),
            // Steps of 0.37 and -1.64 (multiples of 0.01 apart by 2.01): packed, each
            // block's steps divided by their factor into a bit each.
            (
                every_10s(MAX_POINTS, walk),
                FLOAT | TIMES_EVEN | VALUES_PACKED | VALUES_DECIMAL,
            ),
            // Floats that are no decimals of up to 15 places (a -0.0 among decimals is
            // neither: it would read back as 0.0).
            (
                every_10s(MAX_POINTS, |i| FieldValue::Float((i as f64).sqrt())),
                FLOAT | TIMES_EVEN | VALUES_PCO,
            ),
            (
                every_10s(MAX_POINTS, |i| {
                    FieldValue::Float(if i == 500 { -0.0 } else { i as f64 / 8.0 })
                }),
                FLOAT | TIMES_EVEN | VALUES_PCO,
            ),
            // Steady steps: packed, each block two bytes. Steps drawn evenly from 201
            // (decimals of two places): packed, a byte each, a twentieth over pco's.
            (
                every_10s(MAX_POINTS, |i| FieldValue::Integer((1 << 40) | (i * 997))),
                INTEGER | TIMES_EVEN | VALUES_PACKED,
            ),
            (
                every_10s(MAX_POINTS, |i| {
                    let steps: i64 = (0..=i).map(|k| (k * 2_654_435_761) % 201 - 100).sum();
                    FieldValue::Float(steps as f64 / 100.0)
                }),
                FLOAT | TIMES_EVEN | VALUES_PACKED | VALUES_DECIMAL,
            ),
            (
                every_10s(360, |i| FieldValue::Unsigned(u64::MAX - (i as u64 % 7))),
                UNSIGNED | TIMES_EVEN | VALUES_PACKED,
            ),
            (
                every_10s(360, |i| {
                    FieldValue::Unsigned(u64::MAX - i as u64 - 1_000 * (i as u64 / 100))
                }),
                UNSIGNED | TIMES_EVEN | VALUES_PCO,
            ),
            (
                every_10s(MAX_POINTS, |i| FieldValue::Boolean(i % 100 < 3)),
                BOOLEAN | TIMES_EVEN,
            ),
            (
                every_10s(MAX_POINTS, |i| {
                    FieldValue::String(["", "ok", "é\u{1f600}"][(i / 50 % 3) as usize].into())
                }),
                STRING | TIMES_EVEN,
            ),
            // Full chunks, jittered: pco times.
            (
                jitter(every_10s(MAX_POINTS, jumps)),
                FLOAT | TIMES_PCO | VALUES_PCO | VALUES_DECIMAL,
            ),
            (
                jitter(every_10s(MAX_POINTS, |i| FieldValue::Boolean(i % 100 < 3))),
                BOOLEAN | TIMES_PCO,
            ),
            // Slow series: plain, or evenly spaced from two points on.
            (every_10s(1, walk), FLOAT),
            (jitter(every_10s(5, walk)), FLOAT),
            (
                every_10s(2, |i| FieldValue::Integer(-i)),
                INTEGER | TIMES_EVEN,
            ),
            (
                every_10s(5, |_| FieldValue::Unsigned(u64::MAX)),
                UNSIGNED | TIMES_EVEN,
            ),
            (
                every_10s(3, |i| FieldValue::Boolean(i == 1)),
                BOOLEAN | TIMES_EVEN,
            ),
            // Equal times (a decoded chunk may hold them: the fuzzer found one): plain.
            (
                (0..4).map(|i| (T0, FieldValue::Unsigned(i))).collect(),
                UNSIGNED,
            ),
            (
                jitter(every_10s(4, |i| FieldValue::String(i.to_string()))),
                STRING,
            ),
            // Values of several types, which the store never writes: generic.
            (
                vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Boolean(true))],
                GENERIC,
            ),
            (Vec::new(), FLOAT),
        ];
        for (samples, want) in cases {
            let bytes = round_trip(&samples);
            assert_eq!(
                layout(&bytes),
                want,
                "{} points of {:?}",
                samples.len(),
                samples.first()
            );
        }

        // Issue 14's first workload: a float random walk of two decimals and an integer
        // counter, 10 s apart, in full chunks.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut cents = 5_000i64;
        let walk = every_10s(MAX_POINTS, |_| {
            cents += (next() % 201) as i64 - 100;
            FieldValue::Float(cents as f64 / 100.0)
        });
        let mut count = 0i64;
        let counter = every_10s(MAX_POINTS, |_| {
            count += (next() % 1_000) as i64;
            FieldValue::Integer(count)
        });
        for samples in [walk, counter] {
            let bytes = round_trip(&samples).len() as f64 / MAX_POINTS as f64;
            assert!(bytes < 1.5, "{bytes} B/value");
        }
    }

    #[test]
    fn odd_floats_keep_their_bits_in_both_layouts() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let odd = [
            stale,
            -0.0,
            0.0,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0xfff8_dead_beef_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE / 2.0,
            f64::MAX,
        ];
        for n in [1, odd.len(), 200] {
            // Decimals (pco's float multiples) with odd values among them.
            let samples = every_10s(n, |i| {
                FieldValue::Float(if i % 7 == 3 {
                    odd[(i / 7) as usize % odd.len()]
                } else {
                    i as f64 / 100.0
                })
            });
            round_trip(&samples);
        }
        let samples = every_10s(100, |i| FieldValue::Float(odd[i as usize % odd.len()]));
        round_trip(&samples);
        // Decimals at the edges of their layout (15 places, digits up to ±2^53), and past
        // them.
        let two_53 = 9_007_199_254_740_992.0;
        let cases: [(&[f64], bool); 7] = [
            (&[1e-15, 0.5], true),
            (&[-123_456.789_012_345, 0.25], true),
            (&[two_53, -two_53, 1.0], true),
            (&[1e-15, two_53], false),
            (&[0.1 + 0.2, 0.5], false),
            (&[2.0 * two_53], false),
            (&[1e-16], false),
        ];
        for (values, decimal) in cases {
            let samples = every_10s(100, |i| {
                FieldValue::Float(values[i as usize % values.len()])
            });
            let bytes = round_trip(&samples);
            assert_eq!(layout(&bytes) & VALUES_DECIMAL != 0, decimal, "{values:?}");
        }
    }

    #[test]
    fn extreme_times_and_integers_round_trip() {
        let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        // Beyond what `cut` makes (a chunk spans at most MAX_SPAN), but what `encode` can be
        // given: gaps past i64::MAX.
        let times: Vec<Sample> = extremes
            .iter()
            .map(|t| (*t, FieldValue::Integer(*t)))
            .collect();
        round_trip(&times);
        let n = 40;
        let step = i128::from(u64::MAX) / n as i128;
        let spread: Vec<Sample> = (0..n)
            .map(|i| {
                let t = i128::from(i64::MIN) + i as i128 * step;
                let t = i64::try_from(t).expect("within i64");
                (t, FieldValue::Integer(extremes[i % extremes.len()]))
            })
            .collect();
        round_trip(&spread);
        let unsigned: Vec<Sample> = (0..n as i64)
            .map(|i| (i, FieldValue::Unsigned([0, u64::MAX, 1][i as usize % 3])))
            .collect();
        round_trip(&unsigned);
        // A chunk at the top of the range, as `cut` makes them.
        let top = every_10s(3, FieldValue::Integer)
            .into_iter()
            .map(|(t, v)| (i64::MAX - MAX_SPAN + (t - T0), v));
        round_trip(
            &top.chain([(i64::MAX, FieldValue::Integer(i64::MIN))])
                .collect::<Vec<_>>(),
        );
    }

    #[test]
    fn chunks_of_format_1_still_decode() {
        // Pinned bytes of format 1: header, first time, gaps, then values by their stored
        // variant (Integer, Boolean, Float, Unsigned, String).
        let v1 = [
            [b'S', 1].as_slice(),
            &[2],                               // first time 1, zigzag
            &[5, 0, 2, 2, 1, 3],                // 5 gaps
            &[5],                               // 5 values:
            &[1, 1],                            // Integer -1
            &[3, 1],                            // Boolean true
            &[0, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f], // Float NaN
            &[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1], // Unsigned u64::MAX
            &[4, 2, 0xc3, 0xa9],                // String "é"
        ]
        .concat();
        let want: Vec<Sample> = vec![
            (1, FieldValue::Integer(-1)),
            (3, FieldValue::Boolean(true)),
            (5, FieldValue::Float(f64::NAN)),
            (6, FieldValue::Unsigned(u64::MAX)),
            (9, FieldValue::String("é".into())),
        ];
        assert!(same(&decode(&v1).expect("format 1"), &want));
        assert_eq!(
            encode_v1(&refs(&want)),
            v1,
            "format 1's encoder is format 1"
        );
        // The store rewrites a chunk of format 1 (when expiry trims it) in format 2.
        let again = encode(&refs(&want));
        assert_eq!(layout(&again), GENERIC);
        assert!(same(&decode(&again).expect("format 2"), &want));
    }

    #[test]
    fn format_2_bytes_are_pinned() {
        // T0 in 8 little-endian bytes.
        const FIRST: [u8; 8] = [0, 0, 250, 237, 81, 114, 134, 24];
        let pinned = |samples: &[Sample], layout: u8, rest: &[u8]| {
            let want = [&[b'S', 2, layout, samples.len() as u8][..], &FIRST, rest].concat();
            assert_eq!(encode(&refs(samples)), want, "{samples:?}");
            assert!(same(&decode(&want).expect("decodes"), samples));
        };
        // Header, layout (integers, evenly spaced times), count, first time; the gap (2);
        // the values' changes (-1 and 6, zigzag 1 and 12).
        let ints = [
            (T0, FieldValue::Integer(-1)),
            (T0 + 2, FieldValue::Integer(5)),
        ];
        pinned(&ints, INTEGER | TIMES_EVEN, &[2, 1, 12]);
        // Times 1 then 2 apart, plain: ...; the gaps' changes (1 and 1, zigzag 2 and 2); the
        // first value, runs of 2 and 1.
        let uneven = [T0, T0 + 1, T0 + 3];
        let bools = [true, true, false].map(FieldValue::Boolean);
        let bools: Vec<Sample> = uneven.into_iter().zip(bools).collect();
        pinned(&bools, BOOLEAN, &[2, 2, 1, 2, 1]);
        // ...; the gap (1); a dictionary of two ("a", ""), then runs (index, length): (0, 1),
        // (1, 2).
        let strings = ["a", "", ""].map(|s| FieldValue::String(s.into()));
        let strings: Vec<Sample> = (T0..).zip(strings).collect();
        pinned(
            &strings,
            STRING | TIMES_EVEN,
            &[1, 2, 1, b'a', 0, 0, 1, 1, 2],
        );
        // ...; the first float's bits, then XORs: none (a repeat), then 0xbff0 shifted by 6
        // bytes (-0.0 to 1.0: 0 bytes zero at the top, 6 at the bottom: 1 + 8 × 0 + 6).
        let floats = [-0.0, -0.0, 1.0].map(FieldValue::Float);
        let floats: Vec<Sample> = uneven.into_iter().zip(floats).collect();
        pinned(
            &floats,
            FLOAT,
            &[2, 2, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 7, 0xf0, 0xbf],
        );
        // Small times cost less in the generic layout (varints) than in 8 bytes.
        let small: Vec<Sample> = vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Integer(5))];
        assert_eq!(
            encode(&refs(&small)),
            [b'S', 2, GENERIC, 2, 1, 2, 2, 1, 1, 1, 10]
        );
        // Values of two types: format 1's body without its first gap, after the layout.
        let mixed: Vec<Sample> = vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Boolean(true))];
        let bytes = encode(&refs(&mixed));
        assert_eq!(bytes, [b'S', 2, GENERIC, 2, 1, 2, 2, 1, 1, 3, 1]);
        assert_eq!(bytes.len(), encode_v1(&refs(&mixed)).len());
        assert_eq!(encode(&[]), [b'S', 2, FLOAT, 0]);
        assert_eq!(decode(&[b'S', 2, FLOAT, 0]), Ok(Vec::new()));
    }

    #[test]
    fn the_first_time_reads_without_decoding_unless_the_times_are_pco() {
        let walk = |i: i64| FieldValue::Float(i as f64 / 4.0);
        let jittered: Vec<Sample> = every_10s(MAX_POINTS, walk)
            .into_iter()
            .enumerate()
            .map(|(i, (ts, v))| (ts + i as i64 % 3, v))
            .collect();
        let uneven = vec![(T0, walk(0)), (T0 + 1, walk(1)), (T0 + 3, walk(2))];
        let cases = [
            (every_10s(MAX_POINTS, walk), Some(T0)),
            (every_10s(2, FieldValue::Integer), Some(T0)),
            (uneven, Some(T0)),
            (every_10s(1, |_| FieldValue::Boolean(true)), Some(T0)),
            (jittered, None),
            (Vec::new(), None),
            (
                vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Boolean(true))],
                None,
            ),
        ];
        for (samples, want) in cases {
            let bytes = encode(&refs(&samples));
            assert_eq!(first_time(&bytes), want, "{:?}", samples.first());
            if let Some(first) = first_time(&bytes) {
                assert_eq!(
                    Some(first),
                    decode(&bytes).expect("decodes").first().map(|s| s.0)
                );
            }
        }
        assert_eq!(first_time(&encode_v1(&refs(&every_10s(5, walk)))), None);
    }

    #[test]
    fn one_decoder_reads_chunk_after_chunk_as_fresh_decoders_do() {
        let walk = |i: i64| FieldValue::Float((5_000 + (i * 37) % 201 - 100) as f64 / 100.0);
        // Decimals through pco, then packed with a factor.
        let jumps = |i: i64| FieldValue::Float((5_000 + i + 1_000 * (i / 100)) as f64 / 100.0);
        let chunks: Vec<Vec<u8>> = [
            every_10s(MAX_POINTS, jumps),
            every_10s(MAX_POINTS, walk),
            every_10s(3, |i| FieldValue::Integer(-i)),
            every_10s(0, walk),
            every_10s(700, |i| FieldValue::Unsigned(i as u64 * 3)),
            every_10s(5, |i| FieldValue::Boolean(i == 1)),
            vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Boolean(true))],
            every_10s(40, |i| FieldValue::Integer(i * i)),
            every_10s(2, walk),
        ]
        .iter()
        .map(|samples| encode(&refs(samples)))
        .collect();
        let mut decoder = NumberDecoder::default();
        for bytes in chunks.iter().chain(chunks.iter().rev()) {
            let reused = decoder
                .decode(bytes)
                .expect("decodes")
                .map(|(t, v)| (t.to_vec(), v.to_vec()));
            assert_eq!(reused, decode_numbers(bytes).expect("decodes"));
        }
    }

    #[test]
    fn garbage_and_truncated_chunks_are_refused_not_panicked_on() {
        let walk = |i: i64| FieldValue::Float(i as f64 / 4.0);
        let valid: Vec<Vec<u8>> = [
            every_10s(MAX_POINTS, walk),
            every_10s(40, |i| FieldValue::Integer(i * i)),
            every_10s(20, |i| FieldValue::Unsigned(i as u64)),
            every_10s(5, walk),
            every_10s(5, FieldValue::Integer),
            every_10s(5, |i| FieldValue::Unsigned(i as u64)),
            every_10s(30, |i| FieldValue::Boolean(i % 7 == 0)),
            every_10s(30, |i| FieldValue::String(format!("s{}", i % 3))),
            vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Boolean(true))],
        ]
        .iter()
        .map(|samples| round_trip(samples))
        .collect();
        let refused = |bytes: &[u8]| {
            assert!(
                matches!(decode(bytes), Err(FormatError::Decode { .. })),
                "{bytes:?} decoded to {:?}",
                decode(bytes)
            );
            assert!(
                !matches!(decode_numbers(bytes), Ok(Some(_))),
                "{bytes:?} decoded as numbers"
            );
        };
        for bytes in &valid {
            // Every prefix past the header: a chunk cut short never decodes to other points.
            for len in 2..bytes.len() {
                refused(&bytes[..len]);
            }
            // Anything after the values.
            let mut longer = bytes.clone();
            longer.push(0);
            if layout(bytes) & VALUES_PCO == 0 {
                refused(&longer);
            }
            // Every byte changed: whatever decodes is in order; nothing panics.
            for at in 2..bytes.len().min(200) {
                for flip in [0x01, 0x80, 0xff] {
                    let mut changed = bytes.clone();
                    changed[at] ^= flip;
                    if let Ok(samples) = decode(&changed) {
                        assert!(samples.windows(2).all(|w| w[0].0 <= w[1].0));
                    }
                    numbers_agree(&changed);
                }
            }
        }
        let header = |rest: &[u8]| [&[b'S', 2][..], rest].concat();
        for garbage in [
            &[][..],
            &[5, 0],
            &[6, 0],
            &[FLOAT | 1 << 7, 0],
            // Decimals not pco, or not floats; of more places than 15.
            &[FLOAT | VALUES_DECIMAL, 0],
            &[INTEGER | VALUES_PCO | VALUES_DECIMAL, 0],
            &[
                FLOAT | TIMES_EVEN | VALUES_PCO | VALUES_DECIMAL,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                16,
            ],
            &[BOOLEAN | VALUES_PCO, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
            // More points than a typed chunk holds, runs that don't fill the count or pass
            // it, a boolean of 2, a string index past the dictionary, invalid UTF-8.
            &[FLOAT, 0x81, 0x80, 0x04],
            &[BOOLEAN, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1],
            &[BOOLEAN, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 3],
            &[BOOLEAN, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 2],
            &[BOOLEAN, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1],
            &[STRING, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1],
            &[STRING, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff, 0, 1],
            // Float XORs of more zero bytes than 8, or cut short.
            &[
                FLOAT, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 64,
            ],
            &[
                FLOAT, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
            ],
            &[
                FLOAT, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
            ],
            // A time past i64::MAX; a varint past 64 bits.
            &[
                INTEGER, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 2, 0, 0,
            ],
            &[
                INTEGER, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0x02,
            ],
            // Evenly spaced times 0 apart, or past i64::MAX; even and pco both.
            &[INTEGER | TIMES_EVEN, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[
                INTEGER | TIMES_EVEN,
                3,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0x40,
                0x80,
                0x80,
                0x80,
                0x80,
                0x80,
                0x80,
                0x80,
                0x80,
                0x20,
                0,
                0,
                0,
            ],
            &[FLOAT | TIMES_EVEN | TIMES_PCO, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // pco of nothing; generic with gaps and values disagreeing.
            &[FLOAT | TIMES_PCO, 20, 3, 1, 2, 3],
            &[GENERIC, 2, 0, 2, 1, 1, 3, 1],
            &[GENERIC, 2, 0, 0],
        ] {
            refused(&header(garbage));
        }
        assert!(matches!(
            decode(&[0xff, 0xff]),
            Err(FormatError::NoHeader { .. })
        ));
        let mut newer = valid[0].clone();
        newer[1] = CHUNK_VERSION + 1;
        assert!(matches!(
            decode(&newer),
            Err(FormatError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn the_legacy_format_reads_and_writes_the_same_samples() {
        let samples: Vec<Sample> = vec![
            (i64::MIN + 1, FieldValue::Unsigned(u64::MAX)),
            (-1, FieldValue::Integer(-7)),
            (0, FieldValue::Float(f64::NAN.copysign(-1.0))),
            (1, FieldValue::Boolean(false)),
            (i64::MAX, FieldValue::String("é\n".into())),
        ];
        for chunk in &cut(&samples) {
            let again = decode_legacy(&encode_legacy(chunk)).expect("legacy");
            let want: Vec<Sample> = chunk.iter().map(|s| (*s).clone()).collect();
            assert!(same(&again, &want));
        }
    }

    /// Times as `cut` makes them: sorted, unique, at most MAX_SPAN from the first, which may
    /// be anywhere in i64 (at either end included).
    fn chunk_times(max: usize) -> impl Strategy<Value = Vec<Nanos>> {
        let start = prop_oneof![
            Just(Nanos::MIN),
            Just(Nanos::MAX - MAX_SPAN),
            Just(T0),
            Nanos::MIN..=Nanos::MAX - MAX_SPAN,
        ];
        // Small chunks (slow series) as often as the rest.
        let n = prop_oneof![1..=5usize, 6..=max];
        let offsets = prop_oneof![
            // Anywhere in the span, ends included.
            (
                n.clone()
                    .prop_flat_map(|n| proptest::collection::btree_set(0..=MAX_SPAN, n..=n)),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(mut set, first, last)| {
                    if first {
                        set.insert(0);
                    }
                    if last {
                        set.insert(MAX_SPAN);
                    }
                    set.into_iter().collect::<Vec<_>>()
                }),
            // Every 10 s, some with up to 2 ms of jitter.
            (n, any::<bool>(), any::<u64>()).prop_map(|(n, jitter, seed)| {
                let mut rng = seed | 1;
                (0..n as i64)
                    .map(|i| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let j = if jitter { (rng % 4_000_000) as i64 } else { 0 };
                        (i * 10 * SECOND + j).min(MAX_SPAN)
                    })
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }),
        ];
        (start, offsets)
            .prop_map(|(start, offsets)| offsets.into_iter().map(|o| start + o).collect())
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            6 => (-1_000_000i64..1_000_000).prop_map(|c| c as f64 / 100.0),
            1 => any::<u64>().prop_map(f64::from_bits),
            1 => any::<f64>(),
            1 => prop::sample::select(vec![
                f64::from_bits(0x7ff0_0000_0000_0002),
                f64::NAN,
                -f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                0.0,
            ]),
        ]
    }

    /// A pseudo-type of [`value`]: floats that are all decimals, of up to 17 places (so
    /// some, past 15, are not).
    const DECIMALS: u8 = 5;

    /// A decimal: its digits over a power of ten.
    fn decimal() -> impl Strategy<Value = f64> {
        (-(1i64 << 53)..=1 << 53, 0..=17i32).prop_map(|(m, places)| m as f64 / 10f64.powi(places))
    }

    fn integer() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => -1_000i64..1_000_000,
            1 => any::<i64>(),
            1 => prop::sample::select(vec![i64::MIN, i64::MAX, i64::MIN + 1, -1, 0]),
        ]
    }

    fn unsigned() -> impl Strategy<Value = u64> {
        prop_oneof![
            3 => 0u64..1_000_000,
            1 => any::<u64>(),
            1 => prop::sample::select(vec![0, u64::MAX, u64::MAX - 1, 1 << 63]),
        ]
    }

    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec!["", "ok", "é\n", "\u{1f600}", "\0"])
                .prop_map(String::from),
            1 => proptest::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        ]
    }

    /// Values of one type, or (rarely: the store never writes them) of several.
    fn value(kind: u8) -> BoxedStrategy<FieldValue> {
        match kind {
            FLOAT => float().prop_map(FieldValue::Float).boxed(),
            INTEGER => integer().prop_map(FieldValue::Integer).boxed(),
            UNSIGNED => unsigned().prop_map(FieldValue::Unsigned).boxed(),
            BOOLEAN => prop_oneof![3 => Just(true), 1 => any::<bool>()]
                .prop_map(FieldValue::Boolean)
                .boxed(),
            STRING => string().prop_map(FieldValue::String).boxed(),
            DECIMALS => decimal().prop_map(FieldValue::Float).boxed(),
            _ => prop_oneof![
                float().prop_map(FieldValue::Float),
                integer().prop_map(FieldValue::Integer),
                any::<bool>().prop_map(FieldValue::Boolean),
                string().prop_map(FieldValue::String),
            ]
            .boxed(),
        }
    }

    fn samples() -> impl Strategy<Value = Vec<Sample>> {
        (
            prop::sample::select(vec![
                FLOAT, DECIMALS, INTEGER, UNSIGNED, BOOLEAN, STRING, GENERIC,
            ]),
            chunk_times(300),
        )
            .prop_flat_map(|(kind, times)| {
                let n = times.len();
                (Just(times), proptest::collection::vec(value(kind), n..=n))
            })
            .prop_map(|(times, values)| times.into_iter().zip(values).collect())
    }

    proptest! {
        #[test]
        fn every_chunk_round_trips_bit_for_bit_and_no_bigger_than_format_1(
            samples in samples()
        ) {
            let chunk = refs(&samples);
            let (v1, v2) = (encode_v1(&chunk), encode(&chunk));
            let decoded = decode(&v2);
            prop_assert!(
                decoded.as_ref().is_ok_and(|d| same(d, &samples)),
                "{:?} became {:?}", samples, decoded
            );
            prop_assert!(decode(&v1).is_ok_and(|d| same(&d, &samples)));
            prop_assert!(v2.len() <= v1.len(), "{} > {}", v2.len(), v1.len());
            prop_assert_eq!(generic_len(&chunk), encode_generic(&chunk).len());
            // What `cut` makes of the samples is what was given.
            prop_assert_eq!(cut(&samples).len(), 1);
        }
    }
}
