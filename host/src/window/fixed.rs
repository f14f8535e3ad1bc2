//! Tumbling and hopping windows of one rule: open bins by start time, each a map of group
//! key to accumulator. A bin is emitted when the watermark passes its end, corrected while
//! late points arrive within grace, and dropped once grace has passed.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::assign::Span;
use super::rule::{EmitMode, RollupRule};
use super::{Emit, Rows};
use crate::aggregate::Acc;
use crate::point::Nanos;

/// Fast seeded hashing: every point does a lookup by its group key.
type Hasher = foldhash::fast::RandomState;

/// When a window ending at `end` closes and is dropped, given `grace`: at the latest at
/// the end of time, so every window can close.
pub(super) fn close_and_drop(end: i128, grace: Nanos) -> (i128, i128) {
    let last = i128::from(Nanos::MAX);
    (end.min(last), (end + i128::from(grace)).min(last))
}

/// The open windows of one tumbling or hopping rule.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Fixed {
    open: BTreeMap<i128, Bin>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Bin {
    end: i128,
    accs: HashMap<Box<[u8]>, Acc, Hasher>,
    /// Emitted once (on close): later changes are corrections.
    closed: bool,
    /// Groups changed since the bin was last emitted (kept only where that matters: after
    /// close, or with early emission).
    dirty: HashSet<Box<[u8]>, Hasher>,
}

impl Fixed {
    /// Open windows (each group of each bin).
    pub fn open_windows(&self) -> usize {
        self.open.values().map(|b| b.accs.len()).sum()
    }

    /// Adds `value` at `ts` of group `key` to its windows; false when a window it belongs
    /// in was already dropped (the point is late beyond grace for it).
    pub fn add(
        &mut self,
        rule: &RollupRule,
        key: &[u8],
        ts: Nanos,
        value: f64,
        watermark: Nanos,
    ) -> bool {
        let track = matches!(
            rule.emit,
            EmitMode::OnClose {
                early_every: Some(_)
            }
        );
        let mut taken = true;
        for Span { start, end } in rule.kind.fixed(ts) {
            if close_and_drop(end, rule.grace).1 <= i128::from(watermark) {
                taken = false;
                continue;
            }
            let bin = self.open.entry(start).or_insert_with(|| Bin {
                end,
                accs: HashMap::default(),
                closed: false,
                dirty: HashSet::default(),
            });
            match bin.accs.get_mut(key) {
                Some(acc) => acc.add(ts, Some(value)),
                None => {
                    let mut acc = Acc::for_functions(&rule.aggregates);
                    acc.add(ts, Some(value));
                    bin.accs.insert(key.into(), acc);
                }
            }
            if (bin.closed || track) && !bin.dirty.contains(key) {
                bin.dirty.insert(key.into());
            }
        }
        taken
    }

    /// Emits what the watermark (and, with `early`, the wall clock) makes due, and drops
    /// windows whose grace has passed.
    pub fn advance(
        &mut self,
        rule: &RollupRule,
        watermark: Nanos,
        early: bool,
        out: &mut Rows<'_>,
    ) {
        let watermark = i128::from(watermark);
        let mut dropped = Vec::new();
        for (start, bin) in &mut self.open {
            let span = Span {
                start: *start,
                end: bin.end,
            };
            let (close, drop) = close_and_drop(bin.end, rule.grace);
            if close > watermark {
                if !early {
                    // Bins end in start order: the rest are open too.
                    break;
                }
                emit_dirty(bin, span, Emit::Early, out);
                continue;
            }
            match rule.emit {
                EmitMode::OnClose { .. } if !bin.closed => {
                    bin.closed = true;
                    bin.dirty.clear();
                    out.emit_all(span, Emit::Closed, &bin.accs);
                }
                EmitMode::OnClose { .. } => emit_dirty(bin, span, Emit::Corrected, out),
                EmitMode::Final if drop <= watermark => {
                    out.emit_all(span, Emit::Final, &bin.accs);
                }
                EmitMode::Final => {}
            }
            if drop <= watermark {
                dropped.push(*start);
            }
        }
        for start in dropped {
            self.open.remove(&start);
        }
    }
}

fn emit_dirty(bin: &mut Bin, span: Span, emit: Emit, out: &mut Rows<'_>) {
    if bin.dirty.is_empty() {
        return;
    }
    let mut keys: Vec<_> = bin.dirty.drain().collect();
    keys.sort_unstable();
    for key in keys {
        if let Some(acc) = bin.accs.get(&key) {
            out.emit(&key, span, emit, acc);
        }
    }
}
