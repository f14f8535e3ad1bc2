//! Searching sorted columns from where the last search stopped.

/// How many items [`skip_while`] looks at one by one before it gallops.
const NEAR: usize = 4;

/// The first index from `from` on whose item fails `before` (which holds for a prefix of
/// the sorted `items`). The few items just ahead are looked at one by one, then it
/// gallops: doubling steps, then a binary search within the last, so a long skip costs a
/// logarithm. A step of a query's grid may pass one sample or thousands (hourly steps over
/// 10 s samples): a scan one item at a time was most of the evaluation of `increase` then,
/// and galloping over the one sample a dashboard's step passes was 12% of its query.
#[inline]
pub fn skip_while<T>(items: &[T], from: usize, before: impl Fn(&T) -> bool) -> usize {
    let near = items.len().min(from.saturating_add(NEAR));
    let mut from = from;
    while from < near {
        if !before(&items[from]) {
            return from;
        }
        from += 1;
    }
    let mut bound = 1;
    while from + bound <= items.len() && before(&items[from + bound - 1]) {
        bound *= 2;
    }
    let (lo, hi) = (from + bound / 2, (from + bound).min(items.len()));
    lo + items[lo..hi].partition_point(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn galloping_finds_where_a_scan_stops(
            gaps in proptest::collection::vec(0i64..50, 0..300),
            from in 0usize..320,
            bound in -10i64..8_000,
        ) {
            let times: Vec<i64> = gaps
                .iter()
                .scan(0, |t, gap| {
                    *t += gap;
                    Some(*t)
                })
                .collect();
            let from = from.min(times.len());
            let scan = from + times[from..].iter().take_while(|t| **t <= bound).count();
            proptest::prop_assert_eq!(skip_while(&times, from, |t| *t <= bound), scan);
        }
    }
}
