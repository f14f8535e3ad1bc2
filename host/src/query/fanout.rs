//! Reading many series at once: a query's series are independent reads (decoding their
//! chunks is most of a query's time), so they are spread over the machine's cores.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Most threads one query reads with: queries run side by side, and each may take a few.
const READERS: usize = 4;

/// `f` of each of `items`, in their order, computed by up to [`READERS`] scoped threads
/// (no more than the machine's cores), each taking the next item as it finishes one.
/// `enough` is asked before each item is taken: once it says so, the items not yet taken
/// are left `None` (the caller reads those itself if it still needs them).
pub fn map<T, R>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
    enough: impl Fn() -> bool + Sync,
) -> Vec<Option<R>>
where
    T: Sync,
    R: Send,
{
    let threads = READERS.min(crate::cores::cores().get()).min(items.len());
    if threads <= 1 {
        return items
            .iter()
            .map(|item| (!enough()).then(|| f(item)))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        while !enough() {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, f(item)));
        }
        done
    };
    let mut out: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mine = work();
        let theirs = workers.into_iter().flat_map(|w| {
            // A reader's panic is the query's: it reaches the request's task.
            w.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        for (i, r) in mine.into_iter().chain(theirs.collect::<Vec<_>>()) {
            out[i] = Some(r);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_mapped_in_order() {
        let items: Vec<u64> = (0..1_000).collect();
        let out = map(&items, |x| x * 2, || false);
        let want: Vec<Option<u64>> = items.iter().map(|x| Some(x * 2)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn items_after_enough_are_left_to_the_caller() {
        let items: Vec<u64> = (0..1_000).collect();
        let taken = AtomicUsize::new(0);
        let out = map(
            &items,
            |x| {
                taken.fetch_add(1, Ordering::Relaxed);
                *x
            },
            || taken.load(Ordering::Relaxed) >= 10,
        );
        let mapped = out.iter().filter(|o| o.is_some()).count();
        // Each reader may have taken one item past the point.
        assert!((10..10 + READERS).contains(&mapped), "{mapped} mapped");
        assert_eq!(out[0], Some(0));
        assert!(out[999].is_none());
    }
}
