//! Queries of rollup tiers: a tier read directly (`tier=1m&agg=mean`, one value per window
//! at its start, or merged into coarser steps), and the choice of the coarsest tier that
//! answers an `agg` + `step` query exactly.

use std::time::Duration;

use super::Aggregation;
use crate::aggregate::Function;
use crate::point::Nanos;
use crate::store::SeriesFilter;
use crate::time::minus;
use crate::window::{EmitMode, RollupRule, WindowKind};

/// A rollup tier as queries see it.
#[derive(Debug, Clone)]
pub struct TierInfo {
    /// Its name.
    pub name: String,
    /// The rule that writes it.
    pub rule: RollupRule,
    /// How long it keeps windows.
    pub retention: Duration,
}

impl TierInfo {
    /// The width of its windows, when they are tumbling (only those merge into steps).
    fn size(&self) -> Option<Nanos> {
        match self.rule.kind {
            WindowKind::Tumbling { size } => Some(size),
            _ => None,
        }
    }

    /// Whether `function` over steps of `step` can be computed from this tier's windows,
    /// exactly: `step` a multiple of the window, and the function one that merges (count,
    /// sum, min, max, first, last; mean from sum and count), or the window itself.
    pub fn answers(&self, function: Function, step: Option<Nanos>) -> bool {
        let has = |f| self.rule.aggregates.contains(&f);
        let Some(step) = step else {
            return has(function);
        };
        let Some(size) = self.size() else {
            return false;
        };
        if step % size != 0 {
            return false;
        }
        if step == size && has(function) {
            return true;
        }
        match function {
            Function::Count
            | Function::Sum
            | Function::Min
            | Function::Max
            | Function::First
            | Function::Last => has(function),
            Function::Mean => has(Function::Sum) && has(Function::Count),
            Function::Stddev | Function::Quantile(_) => false,
        }
    }

    /// Whether every raw point of `filter`'s series in `range` is in a final window of this
    /// tier: the rule takes the measurement and field whole (no tag filter, one group per
    /// series), emits on close, keeps windows that old (as of `now`), and the watermark of
    /// every partition (`settled`) is past the range's last window's end plus grace.
    fn covers(
        &self,
        filter: &SeriesFilter,
        range: &std::ops::Range<Nanos>,
        (now, settled): (Nanos, Option<Nanos>),
    ) -> bool {
        let rule = &self.rule;
        let (Some(measurement), Some(field), Some(settled)) =
            (&filter.measurement, &filter.field, settled)
        else {
            return false;
        };
        let Some(size) = self.size() else {
            return false;
        };
        let last_final = range.end.saturating_add(size).saturating_add(rule.grace);
        rule.select.measurement.matches(measurement)
            && rule.select.field.matches(field)
            && rule.select.tags.is_empty()
            && rule.group_by.is_none()
            && matches!(rule.emit, EmitMode::OnClose { .. })
            && range.start >= minus(now, self.retention)
            && last_final <= settled
    }
}

/// The coarsest of `tiers` that answers `aggregation` for `filter` in `range` exactly, as
/// of `now` with the tenant's lowest watermark `settled`, if any.
pub fn choose<'a>(
    tiers: &'a [TierInfo],
    filter: &SeriesFilter,
    aggregation: Aggregation,
    range: &std::ops::Range<Nanos>,
    clocks: (Nanos, Option<Nanos>),
) -> Option<&'a TierInfo> {
    tiers
        .iter()
        .filter(|t| {
            t.answers(aggregation.function, Some(aggregation.step))
                && t.covers(filter, range, clocks)
        })
        .max_by_key(|t| t.size())
}

/// Merges windows (in time order, each with its values) that fall in one step into the
/// value of `function`; none when they don't hold what it needs.
pub fn merge(function: Function, rows: &[&[(Function, f64)]]) -> Option<f64> {
    let get =
        |row: &[(Function, f64)], f: Function| row.iter().find(|(g, _)| *g == f).map(|(_, v)| *v);
    let mut values = rows.iter().filter_map(|row| get(row, function));
    match function {
        _ if rows.len() == 1 => get(rows[0], function),
        Function::Count | Function::Sum => Some(values.sum()),
        Function::Min => values.reduce(f64::min),
        Function::Max => values.reduce(f64::max),
        Function::First => values.next(),
        Function::Last => values.next_back(),
        Function::Mean => {
            let (mut sum, mut count) = (0.0, 0.0);
            for row in rows {
                sum += get(row, Function::Sum)?;
                count += get(row, Function::Count)?;
            }
            (count > 0.0).then(|| sum / count)
        }
        Function::Stddev | Function::Quantile(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{RollupConfig, WindowConfig};

    const MINUTE: Nanos = 60_000_000_000;

    fn tier(name: &str, size: &str, aggregates: &[&str]) -> TierInfo {
        let config = RollupConfig {
            name: name.into(),
            measurement: "cpu".into(),
            fields: "*".into(),
            tags: Default::default(),
            group_by: None,
            window: WindowConfig {
                tumbling: Some(size.into()),
                ..WindowConfig::default()
            },
            aggregates: aggregates.iter().map(|a| (*a).to_owned()).collect(),
            grace: Some("10s".into()),
            early_every: None,
            tier: name.into(),
        };
        TierInfo {
            name: name.into(),
            rule: RollupRule::build(&config).expect("rule"),
            retention: Duration::from_secs(365 * 86_400),
        }
    }

    #[test]
    fn the_coarsest_tier_that_answers_exactly_is_chosen() {
        let tiers = [
            tier("1m", "1m", &["count", "sum", "mean", "p99"]),
            tier("1h", "1h", &["count", "sum", "max"]),
        ];
        let filter = SeriesFilter {
            measurement: Some("cpu".into()),
            field: Some("usage".into()),
            tags: Vec::new(),
        };
        let now = 1_000 * 60 * MINUTE;
        let range = (now - 100 * 60 * MINUTE)..(now - 2 * 60 * MINUTE);
        let settled = Some(now - 30 * MINUTE);
        let agg = |f: &str, step: Nanos| Aggregation {
            function: f.parse().expect("f"),
            step,
        };
        let chosen = |f: &str, step: Nanos| {
            choose(&tiers, &filter, agg(f, step), &range, (now, settled)).map(|t| t.name.as_str())
        };
        assert_eq!(
            chosen("mean", 120 * MINUTE),
            Some("1h"),
            "mean from sum and count"
        );
        assert_eq!(chosen("max", 60 * MINUTE), Some("1h"));
        assert_eq!(
            chosen("max", 5 * MINUTE),
            None,
            "1m keeps no max; 1h is too coarse"
        );
        assert_eq!(
            chosen("p99", MINUTE),
            Some("1m"),
            "a quantile only at its own width"
        );
        assert_eq!(chosen("p99", 2 * MINUTE), None, "quantiles don't merge");
        assert_eq!(
            chosen("mean", 90 * 1_000_000_000),
            None,
            "90 s is no multiple of 1m"
        );
        // Windows the watermark has not made final are not in a tier yet: raw answers.
        let recent = (now - 61 * MINUTE)..(now - 20 * MINUTE);
        assert!(
            choose(
                &tiers,
                &filter,
                agg("count", MINUTE),
                &recent,
                (now, settled)
            )
            .is_none()
        );
        assert!(choose(&tiers, &filter, agg("count", MINUTE), &range, (now, None)).is_none());
        // Nor windows past the tier's retention.
        let old = (now - 400 * 24 * 60 * MINUTE)..(now - 300 * 24 * 60 * MINUTE);
        assert!(choose(&tiers, &filter, agg("count", MINUTE), &old, (now, settled)).is_none());
        let other = SeriesFilter {
            measurement: Some("mem".into()),
            ..filter.clone()
        };
        assert!(choose(&tiers, &other, agg("count", MINUTE), &range, (now, settled)).is_none());
    }

    #[test]
    fn windows_merge_into_steps() {
        let a = [
            (Function::Count, 2.0),
            (Function::Sum, 10.0),
            (Function::Min, 1.0),
            (Function::First, 4.0),
        ];
        let b = [
            (Function::Count, 3.0),
            (Function::Sum, 5.0),
            (Function::Min, -1.0),
            (Function::First, 9.0),
        ];
        let rows: [&[(Function, f64)]; 2] = [&a, &b];
        assert_eq!(merge(Function::Count, &rows), Some(5.0));
        assert_eq!(merge(Function::Sum, &rows), Some(15.0));
        assert_eq!(merge(Function::Mean, &rows), Some(3.0));
        assert_eq!(merge(Function::Min, &rows), Some(-1.0));
        assert_eq!(merge(Function::First, &rows), Some(4.0));
        assert_eq!(merge(Function::Max, &rows), None);
        assert_eq!(merge(Function::Sum, &[&a]), Some(10.0));
    }
}
