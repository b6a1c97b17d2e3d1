//! numpy's `np.argsort(a)` (default `kind='quicksort'`) for float32, including its order among equal
//! values, which decides the notebook's greedy matching when two candidate pairs have the same IoU.
//!
//! numpy's portable argsort is an introsort: median-of-three quicksort partitions down to 16
//! elements, then insertion sort (so arrays of up to 16 elements sort stably), and heapsort when the
//! partitions stop shrinking. That is reproduced here. Where numpy dispatches a SIMD sort instead
//! (x86 with AVX2 or AVX-512), ties come out in another order: the notebook's own result then
//! depends on the machine it ran on. The parity test runs numpy with those dispatches switched off
//! (`NPY_DISABLE_CPU_FEATURES`), so it checks this portable algorithm.

/// numpy's float ordering: NaN sorts last.
fn less(a: f32, b: f32) -> bool {
    a < b || (b.is_nan() && !a.is_nan())
}

/// Partitions at most this long (`hi - lo`) are finished by insertion sort.
const SMALL_PARTITION: usize = 15;

/// Indices that sort `values` ascending, in numpy's order.
pub fn argsort(values: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    if values.len() < 2 {
        return idx;
    }
    let v = |i: usize| values[i];
    // Inclusive ranges still to sort, with the depth budget left for each.
    let mut stack: Vec<(usize, usize, i64)> = Vec::new();
    let (mut lo, mut hi) = (0usize, values.len() - 1);
    let mut depth = 2 * i64::from(usize::BITS - 1 - values.len().leading_zeros());
    loop {
        if depth < 0 {
            heapsort(values, &mut idx[lo..=hi]);
        } else {
            while hi - lo > SMALL_PARTITION {
                let mid = lo + ((hi - lo) >> 1);
                if less(v(idx[mid]), v(idx[lo])) {
                    idx.swap(mid, lo);
                }
                if less(v(idx[hi]), v(idx[mid])) {
                    idx.swap(hi, mid);
                }
                if less(v(idx[mid]), v(idx[lo])) {
                    idx.swap(mid, lo);
                }
                let pivot = v(idx[mid]);
                let (mut i, mut j) = (lo, hi - 1);
                idx.swap(mid, j);
                loop {
                    // The median-of-three leaves sentinels at both ends: these scans stay in range.
                    i += 1;
                    while less(v(idx[i]), pivot) {
                        i += 1;
                    }
                    j -= 1;
                    while less(pivot, v(idx[j])) {
                        j -= 1;
                    }
                    if i >= j {
                        break;
                    }
                    idx.swap(i, j);
                }
                idx.swap(i, hi - 1);
                depth -= 1;
                // Keep the larger side for later, go on with the smaller one.
                if i - lo < hi - i {
                    stack.push((i + 1, hi, depth));
                    hi = i - 1;
                } else {
                    stack.push((lo, i - 1, depth));
                    lo = i + 1;
                }
            }
            for k in lo + 1..=hi {
                let moving = idx[k];
                let mut at = k;
                while at > lo && less(v(moving), v(idx[at - 1])) {
                    idx[at] = idx[at - 1];
                    at -= 1;
                }
                idx[at] = moving;
            }
        }
        match stack.pop() {
            Some((l, h, d)) => {
                lo = l;
                hi = h;
                depth = d;
            }
            None => break,
        }
    }
    idx
}

/// numpy's index heapsort (a max-heap over 1-based positions), used when quicksort degenerates.
fn heapsort(values: &[f32], idx: &mut [usize]) {
    let n = idx.len();
    // 1-based view: a(k) is idx[k - 1].
    let sift = |idx: &mut [usize], start: usize, n: usize| {
        let moving = idx[start - 1];
        let (mut i, mut j) = (start, start * 2);
        while j <= n {
            if j < n && less(values[idx[j - 1]], values[idx[j]]) {
                j += 1;
            }
            if less(values[moving], values[idx[j - 1]]) {
                idx[i - 1] = idx[j - 1];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        idx[i - 1] = moving;
    };
    for l in (1..=n / 2).rev() {
        sift(idx, l, n);
    }
    let mut n = n;
    while n > 1 {
        // Move the maximum to the end and restore the heap on the rest, numpy's way: the last
        // element is lifted out, the top goes to the end, then the lifted one sinks from the top.
        let last = idx[n - 1];
        idx[n - 1] = idx[0];
        n -= 1;
        idx[0] = last;
        sift(idx, 1, n);
    }
}

#[cfg(test)]
mod tests {
    use super::argsort;

    #[test]
    fn the_heapsort_fallback_sorts() {
        // Reached only when quicksort's depth budget runs out (adversarial inputs); numpy 2.4 maps
        // kind='heapsort' to its quicksort, so its tie order cannot be checked against a live numpy.
        let v: Vec<f32> = (0..200).map(|i| ((i * 37) % 11) as f32 / 4.0).collect();
        let mut idx: Vec<usize> = (0..v.len()).collect();
        super::heapsort(&v, &mut idx);
        assert!(idx.windows(2).all(|w| v[w[0]] <= v[w[1]]));
        let mut seen = idx.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn sorts_ascending_with_nan_last() {
        let v = [3.0, f32::NAN, 1.0, 2.0];
        assert_eq!(argsort(&v), vec![2, 3, 0, 1]);
    }

    #[test]
    fn up_to_sixteen_values_ties_keep_index_order() {
        let v = [0.5f32; 16];
        assert_eq!(argsort(&v), (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn seventeen_alternating_values_are_not_stable_like_numpy() {
        // numpy 2.4.6, portable path (NPY_DISABLE_CPU_FEATURES="X86_V4 X86_V3"):
        // np.argsort(np.array([0.5, 0.7] * 9, dtype=np.float32)[:17])
        let v: Vec<f32> = (0..17)
            .map(|i| if i % 2 == 0 { 0.5 } else { 0.7 })
            .collect();
        assert_eq!(
            argsort(&v),
            vec![0, 14, 12, 10, 6, 8, 4, 2, 16, 7, 15, 9, 3, 11, 13, 1, 5]
        );
    }
}
