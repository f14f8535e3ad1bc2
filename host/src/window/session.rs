//! Session windows of one rule: per group, runs of points less than `gap` apart. A point
//! that bridges two sessions merges them; a merged session emitted before is retracted at
//! its old start. Sessions come due through an index by time, so advancing the watermark
//! costs only the sessions it closes, however many groups there are.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::assign::Span;
use super::fixed::close_and_drop;
use super::rule::{EmitMode, RollupRule};
use super::{Emit, Rows};
use crate::aggregate::Acc;
use crate::point::Nanos;

type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    start: i128,
    /// Time of its last point: the session ends `gap` after it.
    last: i128,
    acc: Acc,
    closed: bool,
    dirty: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupSessions {
    /// Sorted by start; never within `gap` of each other.
    sessions: Vec<Session>,
    /// End of the latest session dropped after its grace: a point before it would have
    /// belonged to a dropped session, so it is late.
    dropped_end: Option<i128>,
    /// Starts of emitted sessions merged into others: their rows are to be retracted.
    retracted: Vec<i128>,
    /// When the group next needs attention (its entry in the index).
    due: Option<i128>,
}

/// The sessions of one rule.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sessions {
    groups: HashMap<Box<[u8]>, GroupSessions, Hasher>,
    due: BTreeSet<(i128, Box<[u8]>)>,
}

fn gap_of(rule: &RollupRule) -> i128 {
    match rule.kind {
        super::assign::WindowKind::Session { gap } => i128::from(gap),
        _ => 1,
    }
}

impl Sessions {
    /// Open sessions.
    pub fn open_windows(&self) -> usize {
        self.groups.values().map(|g| g.sessions.len()).sum()
    }

    /// Adds `value` at `ts` of group `key` to its session, merging the sessions it bridges;
    /// false when it is late beyond grace (its own session would already have been
    /// dropped, or it would join a dropped one).
    pub fn add(
        &mut self,
        rule: &RollupRule,
        key: &[u8],
        ts: Nanos,
        value: f64,
        watermark: Nanos,
    ) -> bool {
        let (gap, t, wm) = (gap_of(rule), i128::from(ts), i128::from(watermark));
        let dropped_end = self.groups.get(key).and_then(|g| g.dropped_end);
        if close_and_drop(t + gap, rule.grace).1 <= wm || dropped_end.is_some_and(|end| t < end) {
            return false;
        }
        let group = self.groups.entry(key.into()).or_default();
        let sessions = &mut group.sessions;
        // The sessions within gap of t: a contiguous run, as sessions are sorted and apart.
        let from = sessions.partition_point(|s| s.last + gap <= t);
        let to = sessions.partition_point(|s| s.start - gap < t);
        let mut merged: Option<Session> = None;
        for s in sessions.drain(from..to.max(from)) {
            merged = Some(match merged {
                None => s,
                Some(mut m) => {
                    if s.closed {
                        // Its row (at its own start) is replaced by the merged one's.
                        group.retracted.push(s.start);
                    }
                    m.last = m.last.max(s.last);
                    m.acc.merge(&s.acc);
                    m.closed |= s.closed;
                    m
                }
            });
        }
        let mut session = merged.unwrap_or_else(|| Session {
            start: t,
            last: t,
            acc: Acc::for_functions(&rule.aggregates),
            closed: false,
            dirty: false,
        });
        if session.closed && t < session.start {
            // The session's start moves: its emitted row is replaced.
            group.retracted.push(session.start);
        }
        session.start = session.start.min(t);
        session.last = session.last.max(t);
        session.acc.add(ts, Some(value));
        session.dirty = true;
        sessions.insert(from, session);
        reschedule(&mut self.due, key, group, rule, gap);
        true
    }

    /// Emits what the watermark (and, with `early`, the wall clock) makes due, drops
    /// sessions whose grace has passed, and forgets groups nothing can reach any more.
    pub fn advance(
        &mut self,
        rule: &RollupRule,
        watermark: Nanos,
        early: bool,
        out: &mut Rows<'_>,
    ) {
        let (gap, wm) = (gap_of(rule), i128::from(watermark));
        if early {
            let mut keys: Vec<_> = self.groups.keys().cloned().collect();
            keys.sort_unstable();
            for key in keys {
                let Some(group) = self.groups.get_mut(&key) else {
                    continue;
                };
                for s in group.sessions.iter_mut().filter(|s| s.dirty && !s.closed) {
                    s.dirty = false;
                    let span = Span {
                        start: s.start,
                        end: s.last + gap,
                    };
                    out.emit(&key, span, Emit::Early, &s.acc);
                }
            }
        }
        while let Some((time, _)) = self.due.first() {
            if *time > wm {
                break;
            }
            let Some((_, key)) = self.due.pop_first() else {
                break;
            };
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.due = None;
            for start in group.retracted.drain(..) {
                out.retract(&key, start);
            }
            let mut kept = Vec::with_capacity(group.sessions.len());
            for mut s in group.sessions.drain(..) {
                let span = Span {
                    start: s.start,
                    end: s.last + gap,
                };
                let (close, drop) = close_and_drop(span.end, rule.grace);
                match rule.emit {
                    EmitMode::OnClose { .. } if close <= wm && (!s.closed || s.dirty) => {
                        let emit = if s.closed {
                            Emit::Corrected
                        } else {
                            Emit::Closed
                        };
                        s.closed = true;
                        s.dirty = false;
                        out.emit(&key, span, emit, &s.acc);
                    }
                    EmitMode::Final if drop <= wm => out.emit(&key, span, Emit::Final, &s.acc),
                    _ => {}
                }
                if drop <= wm {
                    group.dropped_end =
                        Some(group.dropped_end.map_or(span.end, |e| e.max(span.end)));
                } else {
                    kept.push(s);
                }
            }
            group.sessions = kept;
            let forgotten = group.sessions.is_empty()
                && group
                    .dropped_end
                    .is_none_or(|end| close_and_drop(end + gap, rule.grace).1 <= wm);
            if forgotten {
                // Any point before its dropped end is late by its own window now.
                self.groups.remove(&key);
            } else {
                reschedule(&mut self.due, &key, group, rule, gap);
            }
        }
    }
}

/// Puts `group` in the index at the time it next needs attention: a retraction or
/// correction at once, else its first session's close (or, once closed or for final-only
/// rules, its drop), else when it can be forgotten.
fn reschedule(
    due: &mut BTreeSet<(i128, Box<[u8]>)>,
    key: &[u8],
    group: &mut GroupSessions,
    rule: &RollupRule,
    gap: i128,
) {
    let immediate = !group.retracted.is_empty();
    let next = group
        .sessions
        .iter()
        .map(|s| {
            let (close, drop) = close_and_drop(s.last + gap, rule.grace);
            match rule.emit {
                EmitMode::OnClose { .. } if !s.closed || s.dirty => close,
                _ => drop,
            }
        })
        .min()
        .or_else(|| {
            group
                .dropped_end
                .map(|end| close_and_drop(end + gap, rule.grace).1)
        });
    let next = if immediate { Some(i128::MIN) } else { next };
    if group.due == next {
        return;
    }
    if let Some(old) = group.due.take() {
        due.remove(&(old, Box::from(key)));
    }
    if let Some(at) = next {
        due.insert((at, key.into()));
    }
    group.due = next;
}
