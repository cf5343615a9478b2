//! One stable sort for the whole policy.
//!
//! `slice::sort*` (driftsort) is instantiated per element type and comparator, about 6 KB of
//! wasm each: nine of them, with the sort inside `BTreeMap::from_iter`, were 54 KB of
//! policy.wasm. The lists sorted here are short (error messages, strategic-merge list items),
//! so a single merge sort over indices, with the comparison behind `dyn`, does the work once;
//! what each call site instantiates is a closure and `apply`.

use std::cmp::Ordering;

/// Sorts `items` stably by `compare`, as `slice::sort_by` would.
pub fn sort_by<T>(items: &mut Vec<T>, mut compare: impl FnMut(&T, &T) -> Ordering) {
    if items.len() < 2 {
        return;
    }
    let order = {
        let items = &items[..];
        stable_order(items.len(), &mut |a, b| {
            compare(&items[a], &items[b]) == Ordering::Greater
        })
    };
    apply(items, &order);
}

/// Sorts `items` stably by the key `key` computes, as `slice::sort_by_cached_key` would: the
/// key is computed once per item (the strategic merge's keys are list positions, found by a
/// search each).
pub fn sort_by_key<T, K: Ord>(items: &mut Vec<T>, key: impl FnMut(&T) -> K) {
    if items.len() < 2 {
        return;
    }
    let keys: Vec<K> = items.iter().map(key).collect();
    let order = stable_order(keys.len(), &mut |a, b| keys[a] > keys[b]);
    apply(items, &order);
}

/// The positions of `0..len` in stable sorted order, by a bottom-up merge sort;
/// `after(a, b)` tells whether the item at `a` belongs strictly after the one at `b`.
fn stable_order(len: usize, after: &mut dyn FnMut(usize, usize) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    // Lists usually arrive in order already: one pass tells, as driftsort's run detection does.
    if (1..len).all(|i| !after(i - 1, i)) {
        return order;
    }
    let mut merged = vec![0; len];
    let mut width = 1;
    while width < len {
        let mut start = 0;
        while start < len {
            let mid = (start + width).min(len);
            let end = (start + 2 * width).min(len);
            let (mut left, mut right) = (start, mid);
            for slot in &mut merged[start..end] {
                // Take from the right run only when its head belongs strictly before the
                // left run's head: equal items keep their order.
                let take_right = right < end && (left == mid || after(order[left], order[right]));
                if take_right {
                    *slot = order[right];
                    right += 1;
                } else {
                    *slot = order[left];
                    left += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut order, &mut merged);
        width *= 2;
    }
    order
}

/// Rearranges `items` so that position `i` holds what was at `order[i]`.
fn apply<T>(items: &mut Vec<T>, order: &[usize]) {
    if order.iter().enumerate().all(|(i, &at)| i == at) {
        return;
    }
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(order.iter().filter_map(|&i| slots[i].take()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the comparison with `slice::sort_by` covers many
    /// lengths and many ties without a dependency.
    fn numbers(seed: u64, len: usize, range: u64) -> Vec<u64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % range
            })
            .collect()
    }

    #[test]
    fn sorts_like_the_standard_stable_sort_ties_included() {
        for len in 0..70 {
            for seed in 0..8 {
                // (key, original position): a stable sort keeps equal keys in input order.
                let input: Vec<(u64, usize)> = numbers(seed, len, 1 + len as u64 / 3)
                    .into_iter()
                    .zip(0..)
                    .collect();
                let mut ours = input.clone();
                sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
                let mut std = input.clone();
                std.sort_by_key(|a| a.0);
                assert_eq!(ours, std, "len {len} seed {seed}");
                let mut by_key = input.clone();
                sort_by_key(&mut by_key, |a| a.0);
                assert_eq!(by_key, std, "by key: len {len} seed {seed}");
            }
        }
    }

    #[test]
    fn computes_each_key_once_and_leaves_sorted_input_alone() {
        let mut calls = 0;
        let mut items = vec![3, 1, 2, 1];
        sort_by_key(&mut items, |n| {
            calls += 1;
            *n
        });
        assert_eq!((items, calls), (vec![1, 1, 2, 3], 4));
        let mut comparisons = 0;
        let mut sorted: Vec<u32> = (0..100).collect();
        sort_by(&mut sorted, |a, b| {
            comparisons += 1;
            a.cmp(b)
        });
        assert_eq!((sorted, comparisons), ((0..100).collect(), 99));
    }

    #[test]
    fn sorts_by_key_descending_and_moves_owned_items() {
        let mut items: Vec<String> = ["b", "a", "c", "a"].map(String::from).to_vec();
        sort_by_key(&mut items, |s| std::cmp::Reverse(s.clone()));
        assert_eq!(items, ["c", "b", "a", "a"]);
    }
}
