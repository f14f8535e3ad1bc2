//! Fuzz targets for the decoders of untrusted bytes: line protocol, Telegraf JSON,
//! Prometheus remote write, OTLP metrics, stored chunks and log records. Each mutates its seeds (`host/fuzz/`) for `SLUICE_FUZZ_SECS`
//! seconds (default 1) and checks that nothing panics and that what decodes re-encodes to
//! the same thing. Mutation without coverage guidance: see `host/fuzz/README.md` for why.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::columns::Columns;
use crate::format::{decode_record, encode_record, v2_record};
use crate::ingest::Limits;
use crate::lineproto::{Precision, format_point, parse};
use crate::point::{FieldValue, Point};
use crate::store::chunk;
use crate::tenant::TenantId;
use crate::transport::Record;

/// A small deterministic generator (xorshift64*): runs are repeatable from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the formats: separators, escapes, quotes, type suffixes, extremes.
const TOKENS: [&[u8]; 22] = [
    b"\\",
    b"\"",
    b",",
    b"=",
    b" ",
    b"\n",
    b"\t",
    b"#",
    b"i",
    b"u",
    b"-",
    b"e",
    b".",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"\0",
    "é".as_bytes(),
    b"{",
    b"}",
    b"[",
    b":",
];

/// One random mutation of `input`, with `other` as a splice source.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let at = rng.below(input.len() + 1);
    match rng.below(6) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            input.splice(at..at, token.iter().copied());
        }
        2 if !input.is_empty() => {
            let end = (at + 1 + rng.below(16)).min(input.len());
            input.drain(at.min(end)..end);
        }
        3 if !other.is_empty() => {
            let from = rng.below(other.len());
            let to = (from + 1 + rng.below(64)).min(other.len());
            input.splice(at..at, other[from..to].iter().copied());
        }
        4 if !input.is_empty() => {
            let from = rng.below(input.len());
            let to = (from + 1 + rng.below(32)).min(input.len());
            let copy = input[from..to].to_vec();
            input.splice(at..at, copy);
        }
        _ => input.insert(at, rng.next() as u8),
    }
}

/// Runs `check` on mutations of `seeds` for the time budget; a panic names the input.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let secs = std::env::var("SLUICE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let mut runs = 0u64;
    for seed in &seeds {
        check(seed);
    }
    while Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(8) {
            let other = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, &mut input, other);
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if let Err(panic) = result {
            panic!("{name}: input {} failed: {panic:?}", hex::encode(&input));
        }
        runs += 1;
    }
    eprintln!("fuzz {name}: {runs} inputs in {secs} s");
}

/// The files of `host/fuzz/<dir>`.
fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

/// Equal, with floats compared by bits (NaN payloads and -0.0 included).
fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn same_point(a: &Point, b: &Point) -> bool {
    a.measurement == b.measurement
        && a.tags == b.tags
        && a.timestamp == b.timestamp
        && a.fields.len() == b.fields.len()
        && a.fields
            .iter()
            .zip(&b.fields)
            .all(|(x, y)| x.key == y.key && same_value(&x.value, &y.value))
}

#[test]
fn fuzz_line_protocol() {
    fuzz("lineproto", corpus("lineproto"), |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        let (points, errors) = parse(text, Precision::Nanoseconds, 0);
        for e in &errors {
            assert!(e.line >= 1 && !e.reason.is_empty());
        }
        // What ingest takes prints back as itself; names ingest refuses (control
        // characters, a trailing backslash) need not.
        let limits = Limits {
            max_series_key_bytes: usize::MAX,
            max_tags: usize::MAX,
            max_fields: usize::MAX,
        };
        for point in points.iter().filter(|p| limits.check(p).is_ok()) {
            let line = format_point(point);
            let (again, errors) = parse(&line, Precision::Nanoseconds, 0);
            assert!(
                errors.is_empty() && again.len() == 1 && same_point(&again[0], point),
                "{point:?} printed as {line:?} parsed back as {again:?} {errors:?}"
            );
        }
    });
}

#[test]
fn fuzz_telegraf_json() {
    fuzz("telegraf", corpus("telegraf"), |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return;
        };
        for precision in [Precision::Seconds, Precision::Nanoseconds] {
            if let Ok(points) = crate::ingest::decode_telegraf(text, precision) {
                assert!(points.iter().all(|p| !p.fields.is_empty()));
            }
        }
    });
}

#[test]
fn fuzz_remote_write() {
    use crate::ingest::remote_write::prompb::{TimeSeries, WriteRequest};
    use prost::Message;
    let request = WriteRequest {
        timeseries: vec![
            TimeSeries::new(
                &[("__name__", "up"), ("job", "é"), ("z", "")],
                &[(f64::NAN, i64::MIN), (-0.0, 1_700_000_000_000)],
            ),
            TimeSeries::new(&[("__name__", "x")], &[(1.5, 9_223_372_036_854)]),
        ],
    }
    .encode_to_vec();
    let packed = snap::raw::Encoder::new()
        .compress_vec(&request)
        .expect("compress");
    fuzz("remote-write", vec![request, packed], |bytes| {
        for points in crate::ingest::remote_write::fuzz_points(bytes)
            .into_iter()
            .flatten()
        {
            check_sample_points(&points);
        }
    });
}

/// What every point of a remote-write or OTLP request is: a named measurement, the one
/// field `value`, tags named, valued and sorted.
fn check_sample_points(points: &[Point]) {
    for p in points {
        assert!(!p.measurement.is_empty() && p.fields.len() == 1, "{p:?}");
        assert!(
            p.tags
                .iter()
                .all(|t| !t.key.is_empty() && !t.value.is_empty())
        );
        assert!(p.tags.windows(2).all(|w| w[0].key <= w[1].key), "{p:?}");
    }
}

#[test]
fn fuzz_otlp() {
    let json = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
      "scopeMetrics":[{"scope":{"name":"m","version":"1"},"metrics":[
        {"name":"up","gauge":{"dataPoints":[{"timeUnixNano":"9223372036854775807","asInt":"-9223372036854775808","flags":1}]}},
        {"name":"lat","histogram":{"dataPoints":[{"timeUnixNano":"1","count":"3","sum":1.5,"bucketCounts":["1","2"],"explicitBounds":[0.5],
          "attributes":[{"key":"a.b","value":{"arrayValue":{"values":[{"intValue":"1"},{"bytesValue":"AAE="}]}}}]}]}},
        {"name":"q","summary":{"dataPoints":[{"timeUnixNano":"2","count":"1","sum":2,"quantileValues":[{"quantile":0.5,"value":2}]}]}}]}]}]}"#;
    let request: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest =
        serde_json::from_slice(json).expect("seed");
    let protobuf = prost::Message::encode_to_vec(&request);
    fuzz("otlp", vec![json.to_vec(), protobuf], |bytes| {
        for points in crate::ingest::otlp::fuzz_points(bytes)
            .into_iter()
            .flatten()
        {
            check_sample_points(&points);
            // Attributes are merged by key: no key twice.
            assert!(
                points
                    .iter()
                    .all(|p| p.tags.windows(2).all(|w| w[0].key < w[1].key))
            );
        }
    });
}

fn seed_points() -> Vec<Point> {
    parse(
        "m,h=a v=1.5,i=-3i,u=7u,b=true,s=\"é\\\"x\" -9223372036854775808\nm v=-0 9223372036854775807\n",
        Precision::Nanoseconds,
        0,
    )
    .0
}

#[test]
fn fuzz_chunk_decoder() {
    let samples: Vec<chunk::Sample> = seed_points()
        .into_iter()
        .flat_map(|p| {
            let ts = p.timestamp;
            p.fields.into_iter().map(move |f| (ts, f.value))
        })
        .chain((0..50).map(|i| (i * 1_000, FieldValue::Float(f64::from(i as u32) / 3.0))))
        .collect();
    // A chunk of each layout of format 2 (plain and pco times and numbers, runs of
    // booleans, dictionary strings, generic), and the same in format 1.
    let every_10s = |n: i64, value: &dyn Fn(i64) -> FieldValue| -> Vec<chunk::Sample> {
        (0..n)
            .map(|i| (1_767_225_600_000_000_000 + i * 10_000_000_000, value(i)))
            .collect()
    };
    let typed = [
        every_10s(400, &|i| {
            FieldValue::Float((5_000 + (i * 37) % 201) as f64 / 100.0)
        }),
        every_10s(3, &|i| FieldValue::Float(i as f64 / 100.0)),
        every_10s(40, &|i| FieldValue::Integer(i * i - 7)),
        every_10s(4, &|i| FieldValue::Integer(-i)),
        every_10s(20, &|i| FieldValue::Unsigned(u64::MAX - i as u64)),
        every_10s(30, &|i| FieldValue::Boolean(i % 7 == 0)),
        every_10s(30, &|i| {
            FieldValue::String(["", "ok", "é"][i as usize % 3].into())
        }),
    ];
    let chunks: Vec<Vec<&chunk::Sample>> = chunk::cut(&samples)
        .into_iter()
        .chain(typed.iter().map(|c| c.iter().collect()))
        .collect();
    let seeds: Vec<Vec<u8>> = chunks
        .iter()
        .flat_map(|c| [chunk::encode(c), chunk::encode_v1(c)])
        .collect();
    fuzz("chunk", seeds, |bytes| {
        // Legacy chunks are read too: neither decoder may panic.
        let _ = chunk::decode_legacy(bytes);
        chunk::tests::numbers_agree(bytes);
        let Ok(samples) = chunk::decode(bytes) else {
            return;
        };
        assert!(
            samples.windows(2).all(|w| w[0].0 <= w[1].0),
            "times in order"
        );
        let refs: Vec<&chunk::Sample> = samples.iter().collect();
        let again = chunk::decode(&chunk::encode(&refs)).expect("re-encoded chunk decodes");
        assert_eq!(again.len(), samples.len());
        for (a, b) in again.iter().zip(&samples) {
            assert!(a.0 == b.0 && same_value(&a.1, &b.1));
        }
    });
}

#[test]
fn fuzz_log_record_decoder() {
    let points = seed_points();
    let mut record = Record::new(TenantId::new("acme"), points.clone());
    // Format 1 is serde's through postcard, with its header: still read.
    let v1 = postcard::to_extend(&("acme", &points), vec![b'S', 1]).expect("encodes");
    let v2 = v2_record("acme", &Columns::from_points(&points));
    let seeds = vec![
        encode_record(&mut record),
        encode_record(&mut Record::new(TenantId::new(""), Vec::new())),
        v1,
        v2,
    ];
    fuzz("record", seeds, |bytes| {
        let Ok(mut record) = decode_record(bytes) else {
            return;
        };
        let again = decode_record(&encode_record(&mut record)).expect("re-encoded record decodes");
        assert_eq!(again.tenant, record.tenant);
        let again = again
            .points
            .to_made()
            .expect("a decoded record makes its points");
        let record = record
            .points
            .to_made()
            .expect("a decoded record makes its points");
        assert_eq!(again.len(), record.len());
        assert!(
            again
                .iter()
                .zip(record.iter())
                .all(|(a, b)| same_point(a, b))
        );
    });
}
