//! A misbehaving filter, used by the host's failure tests (host/tests/all/failures.rs).
//!
//! Parameter `mode`: `pass` (default, keep all), `trap` (panic), `loop` (never returns),
//! `oom` (allocates without end), `error` (rejects the batch), `bad-length` (one verdict too
//! many), `log` (logs and prints, keeps all), `drop-odd` (drops points at odd batch
//! positions), `slow` (keeps all after spinning `ms` milliseconds, default 100: a slow
//! but working stage). Any other mode fails the batch with an error naming `mode`.

use std::hint::black_box;

use sluice_guest::{Batch, Filter, PluginError, PointView, export_filter, info, params};

struct Chaos;

impl Filter for Chaos {
    fn new() -> Result<Self, PluginError> {
        Ok(Chaos)
    }

    fn keep(&mut self, _point: &PointView<'_>) -> bool {
        true
    }

    fn filter(&mut self, points: &Batch) -> Result<Vec<bool>, PluginError> {
        let keep_all = vec![true; points.len()];
        match params::get_or("mode", "pass").as_str() {
            "pass" => Ok(keep_all),
            "trap" => panic!("chaos trap requested"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![0xA5; 1 << 20]));
                    black_box(&hoard);
                }
            }
            "error" => Err(PluginError::at(0, "chaos error")),
            "bad-length" => Ok(vec![true; points.len() + 1]),
            "log" => {
                let n = points.len();
                info!("chaos says hello to {n} points"; mode = "log", points = n);
                println!("chaos stdout line");
                eprintln!("chaos stderr line");
                Ok(keep_all)
            }
            "drop-odd" => Ok((0..points.len()).map(|i| i % 2 == 0).collect()),
            "slow" => {
                let ms = params::parse::<u64>("ms")?.unwrap_or(100);
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(ms) {
                    black_box(());
                }
                Ok(keep_all)
            }
            other => Err(PluginError::new(format!(
                "parameter `mode` = `{other}`: unknown mode"
            ))),
        }
    }
}

export_filter!(Chaos);
