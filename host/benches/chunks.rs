//! Chunk encodings on Sluice's data shapes (issue 14): bytes per value and encode/decode
//! time per value of the store's chunk formats 1 and 2, against the candidates for its
//! compression: pco (pcodec, default config, times and values as two columns), tsz
//! (Gorilla) and a hand-written Gorilla (delta-of-delta times, XOR floats) for reference.
//!
//! Shapes: 10 s intervals in nanoseconds (exact, or with ±2 ms of jitter in ns or whole ms);
//! a float random walk rounded to 2 decimals, an integer counter, a gauge of few repeated
//! values, booleans that rarely flip, strings of few distinct values; chunks of 1, 2, 5
//! (slow series write a one-point chunk a sync), 360 and 1,024 points (a full chunk).
//! Every candidate's output is decoded and checked bit for bit; a row that doesn't round-trip
//! says so.
//!
//! Run: `cargo bench --bench chunks` (about a minute; times are the best of 3 rounds, on a
//! shared machine they move by ±30 %).

use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice::point::FieldValue;
use sluice::store::chunk::{self, Sample};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-01-01T00:00:00Z in ns.
const T0: i64 = 1_767_225_600_000_000_000;
const STEP: i64 = 10_000_000_000;
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_millis(40);

/// A small deterministic generator (xorshift64*): runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `-r..=r`.
    fn within(&mut self, r: i64) -> i64 {
        (self.next() % (2 * r as u64 + 1)) as i64 - r
    }
}

#[derive(Clone, Copy)]
enum Times {
    Exact,
    JitterNs,
    JitterMs,
}

impl Times {
    fn name(self) -> &'static str {
        match self {
            Times::Exact => "10 s",
            Times::JitterNs => "10 s ±2 ms (ns)",
            Times::JitterMs => "10 s ±2 ms (ms)",
        }
    }

    fn make(self, n: usize, rng: &mut Rng) -> Vec<i64> {
        (0..n as i64)
            .map(|i| {
                let ts = T0 + i * STEP;
                match self {
                    Times::Exact => ts,
                    Times::JitterNs => ts + rng.within(2_000_000),
                    Times::JitterMs => ts + rng.within(2) * 1_000_000,
                }
            })
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Walk,
    Counter,
    Gauge,
    Boolean,
    String,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Walk => "float walk, 2 decimals",
            Shape::Counter => "integer counter",
            Shape::Gauge => "gauge, repeated values",
            Shape::Boolean => "booleans",
            Shape::String => "strings, 3 distinct",
        }
    }

    fn make(self, n: usize, rng: &mut Rng) -> Vec<FieldValue> {
        let mut cents = 5_000i64;
        let mut count = 1_234_567_890i64;
        let mut level = 4.0;
        let mut flag = true;
        let mut state = 0;
        (0..n)
            .map(|_| match self {
                // Steps of up to ±1.00, in cents, so every value has two decimals exactly as
                // a client would print it.
                Shape::Walk => {
                    cents += rng.within(100);
                    FieldValue::Float(cents as f64 / 100.0)
                }
                Shape::Counter => {
                    count += (rng.next() % 1_000) as i64;
                    FieldValue::Integer(count)
                }
                Shape::Gauge => {
                    if rng.next().is_multiple_of(20) {
                        level = (rng.next() % 8) as f64;
                    }
                    FieldValue::Float(level)
                }
                Shape::Boolean => {
                    flag ^= rng.next().is_multiple_of(50);
                    FieldValue::Boolean(flag)
                }
                Shape::String => {
                    if rng.next().is_multiple_of(30) {
                        state = rng.next() % 3;
                    }
                    FieldValue::String(["ok", "warning", "critical"][state as usize].into())
                }
            })
            .collect()
    }
}

/// The best of `ROUNDS` rounds of `f`, in ns per value of `n`.
fn per_value<R>(n: usize, mut f: impl FnMut() -> R) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut runs = 0u64;
            while started.elapsed() < ROUND {
                black_box(f());
                runs += 1;
            }
            started.elapsed().as_nanos() as f64 / (runs as f64 * n as f64)
        })
        .fold(f64::INFINITY, f64::min)
}

/// One candidate on one chunk.
struct Row {
    bytes: usize,
    encode: f64,
    decode: f64,
    round_trips: bool,
}

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

/// Sluice's chunk formats.
fn sluice(samples: &[Sample], encode: fn(&[&Sample]) -> Vec<u8>) -> Row {
    let refs: Vec<&Sample> = samples.iter().collect();
    let bytes = encode(&refs);
    let n = samples.len();
    Row {
        bytes: bytes.len(),
        encode: per_value(n, || encode(black_box(&refs))),
        decode: per_value(n, || chunk::decode(black_box(&bytes))),
        round_trips: chunk::decode(&bytes).is_ok_and(|d| same(&d, samples)),
    }
}

/// ns per value of reading `samples`' chunk as a query does ([`chunk::NumberDecoder`]),
/// and of reading its values' column as pco (the chunk's config, digits for decimals) into
/// the same floats: the store's two ways of storing numbers, on the same column.
fn numbers_read(samples: &[Sample]) -> (f64, f64) {
    use pco::standalone::{simple_compress, simple_decompress};
    use pco::{ChunkConfig, DeltaSpec};
    let refs: Vec<&Sample> = samples.iter().collect();
    let bytes = chunk::encode(&refs);
    let mut decoder = chunk::NumberDecoder::default();
    let read = per_value(samples.len(), || {
        decoder
            .decode(black_box(&bytes))
            .expect("decode")
            .map(|(_, v)| v.len())
    });
    // Floats of two places as their digits, as the chunk stores them.
    let (scale, column): (f64, Vec<i64>) = match &samples[0].1 {
        FieldValue::Float(_) => (
            100.0,
            samples
                .iter()
                .map(|(_, v)| (v.as_f64().unwrap_or(0.0) * 100.0).round() as i64)
                .collect(),
        ),
        _ => (
            1.0,
            samples
                .iter()
                .map(|(_, v)| v.as_f64().unwrap_or(0.0) as i64)
                .collect(),
        ),
    };
    let config = ChunkConfig::default()
        .with_compression_level(4)
        .with_delta_spec(DeltaSpec::TryConsecutive(1));
    let pco = simple_compress(&column, &config).expect("pco");
    let mut floats = Vec::with_capacity(column.len());
    let pco_read = per_value(column.len(), || {
        let digits: Vec<i64> = simple_decompress(black_box(&pco)).expect("pco");
        floats.clear();
        floats.extend(digits.iter().map(|d| *d as f64 / scale));
        floats.len()
    });
    (read, pco_read)
}

/// A numeric column for the candidates that take numbers only.
enum Numbers {
    Float(Vec<f64>),
    Integer(Vec<i64>),
}

impl Numbers {
    fn of(values: &[FieldValue]) -> Option<Self> {
        match values.first()? {
            FieldValue::Float(_) => Some(Numbers::Float(
                values
                    .iter()
                    .filter_map(|v| match v {
                        FieldValue::Float(f) => Some(*f),
                        _ => None,
                    })
                    .collect(),
            )),
            FieldValue::Integer(_) => Some(Numbers::Integer(
                values
                    .iter()
                    .filter_map(|v| match v {
                        FieldValue::Integer(i) => Some(*i),
                        _ => None,
                    })
                    .collect(),
            )),
            _ => None,
        }
    }

    /// As f64, for the candidates of floats only (exact below 2^53, which the counter is).
    fn floats(&self) -> Vec<f64> {
        match self {
            Numbers::Float(v) => v.clone(),
            Numbers::Integer(v) => v.iter().map(|i| *i as f64).collect(),
        }
    }
}

/// pco with its default config, the times and the values as two standalone columns.
fn pco_default(times: &[i64], numbers: &Numbers) -> Row {
    use pco::ChunkConfig;
    use pco::standalone::{simple_compress, simple_decompress};
    let config = ChunkConfig::default();
    let encode = || {
        let t = simple_compress(times, &config).expect("pco times");
        let v = match numbers {
            Numbers::Float(v) => simple_compress(v, &config),
            Numbers::Integer(v) => simple_compress(v, &config),
        }
        .expect("pco values");
        (t, v)
    };
    let (t, v) = encode();
    let decode = || {
        let times: Vec<i64> = simple_decompress(&t).expect("pco times");
        let same = match numbers {
            Numbers::Float(want) => simple_decompress::<f64>(&v)
                .expect("pco values")
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            Numbers::Integer(want) => &simple_decompress::<i64>(&v).expect("pco values") == want,
        };
        (times, same)
    };
    let (decoded, same) = decode();
    let n = times.len();
    Row {
        bytes: t.len() + v.len(),
        encode: per_value(n, encode),
        decode: per_value(n, decode),
        round_trips: same && decoded == times,
    }
}

/// tsz: Gorilla of (u64 time, f64) pairs. It keeps the first time's distance from the
/// block's start in 14 bits and a delta-of-delta in 32 (`write_first`,
/// `write_next_timestamp`), made for seconds: 10 s in ns (10^10) does not fit. So it gets
/// the times in seconds here, and whether it round-trips them in ns is asked separately.
fn tsz(times: &[i64], numbers: &Numbers) -> (Row, bool) {
    use tsz::stream::{BufferedReader, BufferedWriter};
    use tsz::{DataPoint, Decode, Encode, StdDecoder, StdEncoder};
    let values = numbers.floats();
    let encode = |times: &[u64]| {
        let mut e = StdEncoder::new(times[0], BufferedWriter::new());
        for (t, v) in times.iter().zip(&values) {
            e.encode(DataPoint::new(*t, *v));
        }
        e.close()
    };
    let decode = |bytes: &[u8]| {
        let mut d = StdDecoder::new(BufferedReader::new(bytes.into()));
        let mut out = Vec::with_capacity(values.len());
        while let Ok(p) = d.next() {
            out.push((p.get_time(), p.get_value()));
        }
        out
    };
    let round_trips = |times: &[u64], bytes: &[u8]| {
        let back = decode(bytes);
        back.len() == times.len()
            && back
                .iter()
                .zip(times.iter().zip(&values))
                .all(|((t, v), (u, w))| t == u && v.to_bits() == w.to_bits())
    };
    let ns: Vec<u64> = times.iter().map(|t| *t as u64).collect();
    let ns_ok = round_trips(&ns, &encode(&ns));
    let secs: Vec<u64> = times.iter().map(|t| (*t / 1_000_000_000) as u64).collect();
    let bytes = encode(&secs);
    let n = times.len();
    let row = Row {
        bytes: bytes.len(),
        encode: per_value(n, || encode(black_box(&secs))),
        decode: per_value(n, || decode(black_box(&bytes))),
        round_trips: round_trips(&secs, &bytes),
    };
    (row, ns_ok)
}

/// Bits, most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    acc: u128,
    len: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, bits: u32) {
        let value = if bits == 64 {
            value
        } else {
            value & ((1 << bits) - 1)
        };
        self.acc = (self.acc << bits) | u128::from(value);
        self.len += bits;
        while self.len >= 8 {
            self.len -= 8;
            self.bytes.push((self.acc >> self.len) as u8);
        }
        self.acc &= (1 << self.len) - 1;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.bytes.push((self.acc << (8 - self.len)) as u8);
        }
        self.bytes
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl BitReader<'_> {
    fn get(&mut self, bits: u32) -> u64 {
        let mut value = 0u64;
        let mut left = bits;
        while left > 0 {
            let byte = self.bytes.get(self.at / 8).copied().unwrap_or(0);
            let offset = (self.at % 8) as u32;
            let take = (8 - offset).min(left);
            let part = (u32::from(byte) >> (8 - offset - take)) & ((1 << take) - 1);
            value = (value << take) | u64::from(part);
            left -= take;
            self.at += take as usize;
        }
        value
    }

    fn bit(&mut self) -> bool {
        self.get(1) == 1
    }
}

/// Gorilla's prefix codes for a zigzagged delta-of-delta: 0, then 10, 110, 1110, 11110 and
/// 11111 before 7, 9, 12, 32 and 64 bits (Gorilla's, with 32 and 64 for ns).
const DOD_BITS: [u32; 5] = [7, 9, 12, 32, 64];

fn put_dod(w: &mut BitWriter, dod: i64) {
    let z = ((dod << 1) ^ (dod >> 63)) as u64;
    if z == 0 {
        w.put(0, 1);
        return;
    }
    for (i, bits) in DOD_BITS.iter().enumerate() {
        if *bits == 64 || z < 1 << bits {
            let ones = i as u32 + 1;
            // `ones` ones then a zero, but no zero after the last prefix.
            let (prefix, len) = if i + 1 == DOD_BITS.len() {
                ((1 << ones) - 1, ones)
            } else {
                (((1 << ones) - 1) << 1, ones + 1)
            };
            w.put(prefix, len);
            w.put(z, *bits);
            return;
        }
    }
}

fn get_dod(r: &mut BitReader<'_>) -> i64 {
    let mut ones = 0;
    while ones < DOD_BITS.len() && r.bit() {
        ones += 1;
    }
    if ones == 0 {
        return 0;
    }
    let z = r.get(DOD_BITS[ones - 1]);
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Delta-of-delta of a column (times, integers).
fn put_dods(w: &mut BitWriter, column: &[i64]) {
    w.put(column[0] as u64, 64);
    let mut delta = 0i64;
    for pair in column.windows(2) {
        let d = pair[1].wrapping_sub(pair[0]);
        put_dod(w, d.wrapping_sub(delta));
        delta = d;
    }
}

fn get_dods(r: &mut BitReader<'_>, n: usize) -> Vec<i64> {
    let mut column = vec![r.get(64) as i64];
    let mut delta = 0i64;
    for i in 1..n {
        delta = delta.wrapping_add(get_dod(r));
        column.push(column[i - 1].wrapping_add(delta));
    }
    column
}

/// Gorilla's XOR of each float with the one before.
fn put_xors(w: &mut BitWriter, values: &[f64]) {
    let mut previous = values[0].to_bits();
    w.put(previous, 64);
    let (mut lead, mut trail) = (u32::MAX, 0);
    for v in &values[1..] {
        let bits = v.to_bits();
        let xor = bits ^ previous;
        previous = bits;
        if xor == 0 {
            w.put(0, 1);
        } else if lead != u32::MAX && xor.leading_zeros() >= lead && xor.trailing_zeros() >= trail {
            w.put(0b10, 2);
            w.put(xor >> trail, 64 - lead - trail);
        } else {
            lead = xor.leading_zeros().min(63);
            trail = xor.trailing_zeros();
            w.put(0b11, 2);
            w.put(u64::from(lead), 6);
            w.put(u64::from(64 - lead - trail - 1), 6);
            w.put(xor >> trail, 64 - lead - trail);
        }
    }
}

fn get_xors(r: &mut BitReader<'_>, n: usize) -> Vec<f64> {
    let mut previous = r.get(64);
    let mut values = vec![f64::from_bits(previous)];
    let (mut lead, mut trail) = (0, 0);
    for _ in 1..n {
        if r.bit() {
            if r.bit() {
                lead = r.get(6) as u32;
                trail = 64 - lead - (r.get(6) as u32 + 1);
            }
            previous ^= r.get(64 - lead - trail) << trail;
        }
        values.push(f64::from_bits(previous));
    }
    values
}

/// The hand-written Gorilla: delta-of-delta times, then XOR floats or delta-of-delta
/// integers.
fn gorilla(times: &[i64], numbers: &Numbers) -> Row {
    let encode = || {
        let mut w = BitWriter::default();
        put_dods(&mut w, times);
        match numbers {
            Numbers::Float(v) => put_xors(&mut w, v),
            Numbers::Integer(v) => put_dods(&mut w, v),
        }
        w.finish()
    };
    let bytes = encode();
    let n = times.len();
    let decode = || {
        let mut r = BitReader {
            bytes: &bytes,
            at: 0,
        };
        let t = get_dods(&mut r, n);
        let same = match numbers {
            Numbers::Float(want) => get_xors(&mut r, n)
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            Numbers::Integer(want) => &get_dods(&mut r, n) == want,
        };
        (t, same)
    };
    let (t, same) = decode();
    Row {
        bytes: bytes.len(),
        encode: per_value(n, encode),
        decode: per_value(n, decode),
        round_trips: same && t == times,
    }
}

fn print(shape: &str, times: &str, n: usize, name: &str, row: &Row) {
    println!(
        "| {shape} | {times} | {n} | {name} | {:.2} | {:.0} | {:.0} |{}",
        row.bytes as f64 / n as f64,
        row.encode,
        row.decode,
        if row.round_trips {
            ""
        } else {
            " does not round-trip"
        }
    );
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cases = [
        (Shape::Walk, Times::Exact),
        (Shape::Walk, Times::JitterNs),
        (Shape::Walk, Times::JitterMs),
        (Shape::Counter, Times::Exact),
        (Shape::Gauge, Times::Exact),
        (Shape::Boolean, Times::Exact),
        (Shape::String, Times::Exact),
    ];
    println!(
        "| values | times | points | encoding | B/value | encode ns/value | decode ns/value |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut tsz_ns = true;
    let mut workload = Vec::new();
    for (shape, times) in cases {
        for n in [1, 2, 5, 360, chunk::MAX_POINTS] {
            let ts = times.make(n, &mut rng);
            let values = shape.make(n, &mut rng);
            let samples: Vec<Sample> = ts.iter().copied().zip(values.iter().cloned()).collect();
            let (shape_name, times_name) = (shape.name(), times.name());
            let v1 = sluice(&samples, chunk::encode_v1);
            let v2 = sluice(&samples, chunk::encode);
            print(shape_name, times_name, n, "Sluice v1 (postcard)", &v1);
            print(shape_name, times_name, n, "Sluice v2", &v2);
            if n == chunk::MAX_POINTS
                && matches!(times, Times::Exact)
                && matches!(shape, Shape::Walk | Shape::Counter)
            {
                workload.push((shape_name, v1.bytes, v2.bytes, numbers_read(&samples)));
            }
            let Some(numbers) = Numbers::of(&values) else {
                continue;
            };
            print(
                shape_name,
                times_name,
                n,
                "pco 1.1, default",
                &pco_default(&ts, &numbers),
            );
            let (row, ns_ok) = tsz(&ts, &numbers);
            tsz_ns &= ns_ok;
            print(shape_name, times_name, n, "tsz 0.1.4 (times in s)", &row);
            print(
                shape_name,
                times_name,
                n,
                "Gorilla by hand",
                &gorilla(&ts, &numbers),
            );
        }
    }
    println!();
    println!("tsz round-trips times in ns: {tsz_ns}");
    for (shape, v1, v2, (packed, pco)) in workload {
        let n = chunk::MAX_POINTS as f64;
        println!(
            "issue 14's workload, {shape}, {} points, 10 s: v1 {:.2} B/value, v2 {:.2} B/value; \
             read as numbers (a query's decode) {packed:.2} ns/value, its column as pco \
             {pco:.2} ns/value",
            chunk::MAX_POINTS,
            v1 as f64 / n,
            v2 as f64 / n
        );
    }
}
