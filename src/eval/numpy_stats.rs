//! The few numpy reductions the notebook's numbers go through, with numpy's rounding and tie rules.

/// `np.mean` of float64 values: numpy's pairwise summation (8 running sums in blocks of up to 128,
/// halves above that), divided by the count. NaN for an empty slice, as numpy (with a warning).
pub fn mean(values: &[f64]) -> f64 {
    pairwise_sum(values) / values.len() as f64
}

fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, v| acc + v)
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &a[whole..] {
            res += v;
        }
        res
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// `np.argmax`: the first index of the largest value (NaN counts as largest, first NaN wins).
pub fn argmax(values: &[f64]) -> Option<usize> {
    first_extreme(values, |candidate, best| candidate > best)
}

/// `np.argmin`: the first index of the smallest value (NaN wins, as in numpy).
pub fn argmin(values: &[f64]) -> Option<usize> {
    first_extreme(values, |candidate, best| candidate < best)
}

fn first_extreme(values: &[f64], better: impl Fn(f64, f64) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        match best {
            None => best = Some(i),
            Some(b) if values[b].is_nan() => return Some(b),
            Some(b) if v.is_nan() || better(v, values[b]) => best = Some(i),
            _ => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_uses_numpys_pairwise_order() {
        // np.mean([1e16, 1.0, -1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == 0.5555555555555556 in numpy 2.4.6
        // (the two 1.0 beside ±1e16 are rounded away in separate running sums); left to right gives 6/9.
        let v = [1e16, 1.0, -1e16, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(mean(&v), 5.0 / 9.0);
        assert_eq!(mean(&[0.5, 0.25]), 0.375);
    }

    #[test]
    fn argmax_and_argmin_take_the_first_of_equals() {
        let v = [0.2, 0.8, 0.1, 0.8, 0.1];
        assert_eq!(argmax(&v), Some(1));
        assert_eq!(argmin(&v), Some(2));
        assert_eq!(argmax(&[]), None);
    }
}
