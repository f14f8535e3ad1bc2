//! Line-protocol parsing: Sluice's parser (to owned points, as ingest uses it) against the
//! `influxdb-line-protocol` crate it replaced (parse only, no points: the cheaper half of
//! what the old ingest path did), on the same bodies in one run.
//!
//! Both run on the service's allocator (mimalloc), as in `sluice run`.
//!
//! Run: `cargo bench --bench lineproto`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice::lineproto::{Precision, parse};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lines per body, as the ingest bench's bulk batches.
const LINES: usize = 5_000;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(400);

/// A body of `LINES` lines made by `line(k)`.
fn body(line: impl Fn(usize) -> String) -> String {
    (0..LINES).fold(String::new(), |mut out, k| {
        let _ = writeln!(out, "{}", line(k));
        out
    })
}

/// Lines per second of `parse_body` over `body`: the best of `ROUNDS` rounds.
fn rate(body: &str, parse_body: &dyn Fn(&str) -> usize) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut lines = 0;
            while started.elapsed() < ROUND {
                lines += black_box(parse_body(black_box(body)));
            }
            lines as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let cases = [
        (
            "bulk (1 tag, 2 floats)",
            body(|k| {
                format!(
                    "cpu,host=host-{} usage_user={}.{},usage_system={}.{} {}",
                    k % 1000,
                    k % 97,
                    k % 10,
                    k % 89,
                    k % 3,
                    1_700_000_000_000_000_000 + k
                )
            }),
        ),
        (
            "telegraf disk (5 tags, 5 typed fields, an escape)",
            body(|k| {
                format!(
                    "disk,device=sda{},fstype=ext4,host=h-{},mode=rw,path=/data\\ {} \
                     free={}i,inodes_free={}u,used_percent={}.5,ok=true,label=\"root fs\" {}",
                    k % 4,
                    k % 100,
                    k % 3,
                    k * 4096,
                    k * 7,
                    k % 100,
                    1_700_000_000_000_000_000 + k
                )
            }),
        ),
    ];
    println!("Line protocol, {LINES}-line bodies, best of {ROUNDS} rounds, one thread:");
    println!(
        "    {:<50} {:>16} {:>22} {:>7}",
        "body", "sluice lines/s", "crate lines/s (parse)", "ratio"
    );
    for (name, body) in &cases {
        let ours = rate(body, &|b| {
            let (points, errors) = parse(b, Precision::Nanoseconds, 0);
            assert!(errors.is_empty(), "{errors:?}");
            points.len()
        });
        let theirs = rate(body, &|b| {
            let mut lines = 0;
            for line in influxdb_line_protocol::parse_lines(b) {
                black_box(line.expect("valid line"));
                lines += 1;
            }
            lines
        });
        println!(
            "    {name:<50} {ours:>16.0} {theirs:>22.0} {:>6.2}x",
            ours / theirs
        );
    }
}
