//! How sure a claim is: the runs a measured number rests on and a distribution-free interval
//! over them (docs/science.md §5, "How sure each claim is").
//!
//! A claim measured per run and summarised by the median over runs gets the order-statistic
//! (binomial) confidence interval of the median: with the `n` per-run values sorted,
//! `[x_(k), x_(n+1-k)]` covers the true median with probability
//! `1 - 2 P(Bin(n, 1/2) <= k - 1)`, whatever the distribution of the values (continuous, runs
//! independent). [`median_interval`] takes the largest `k` whose coverage is at least 95%,
//! which needs at least [`RUNS_FOR_95`] = 6 runs; with 3 to 5 runs it takes `[min, max]`
//! (`k = 1`) and states its lower coverage (75% at 3 runs, 87.5% at 4, 93.75% at 5); with fewer
//! than [`MIN_RUNS`] = 3 runs there is no interval and the claim says "too few runs".
//!
//! The PASS rule uses the unfavourable end of the interval (for `x <= bound` the upper end):
//! the probability that the true median lies beyond that end is at most `(1 - coverage) / 2`
//! (12.5% at 3 runs, 2.5% or less from 6 runs on).

use serde::{Deserialize, Serialize};

/// Fewest runs for an interval: `[min, max]` of 3 runs covers the median with probability
/// 75%, and each end alone fails with probability 1/8; with 2 runs it would be 50% (1/4 per
/// end), no better than a guess.
pub const MIN_RUNS: usize = 3;

/// Fewest runs for which an order-statistic interval of the median reaches 95% coverage
/// (`[min, max]` of 6 runs: 1 - 2/64 = 96.9%; of 5 runs only 93.75%).
pub const RUNS_FOR_95: usize = 6;

/// The coverage every interval aims at.
pub const TARGET_COVERAGE: f64 = 0.95;

/// `P(Bin(n, 1/2) <= j)`, exactly (as a sum of binomial coefficients over 2^n; `n` up to a few
/// hundred is exact to f64 round-off).
pub fn binomial_half_cdf(n: usize, j: usize) -> f64 {
    // Coefficients as f64 via the multiplicative recurrence C(n, i+1) = C(n, i) (n-i)/(i+1),
    // each term scaled by 2^-n through logs to stay finite for large n.
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_c = 0.0f64; // ln C(n, 0)
    let mut sum = 0.0f64;
    for i in 0..=j.min(n) {
        sum += (ln_c - ln2n).exp();
        if i < n {
            ln_c += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        }
    }
    sum.min(1.0)
}

/// The coverage of `[x_(k), x_(n+1-k)]` (1-based order statistics, `1 <= k <= n/2` rounded
/// up) as an interval for the median: `1 - 2 P(Bin(n, 1/2) <= k - 1)`.
pub fn order_statistic_coverage(n: usize, k: usize) -> f64 {
    assert!(
        k >= 1 && 2 * k <= n + 1,
        "order statistic k = {k} of n = {n}"
    );
    1.0 - 2.0 * binomial_half_cdf(n, k - 1)
}

/// An interval for the median of `n` values: `[x_(k), x_(n+1-k)]` and its coverage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianInterval {
    /// Lower end, `x_(k)`.
    pub lo: f64,
    /// Upper end, `x_(n+1-k)`.
    pub hi: f64,
    /// Which order statistic (1-based) the ends are.
    pub k: usize,
    /// How many values.
    pub n: usize,
    /// Its coverage, [`order_statistic_coverage`]`(n, k)`.
    pub coverage: f64,
}

/// The order-statistic interval of the median of `values` (NaN left out; +-inf kept as
/// extreme values): the largest `k` with coverage >= 95% when there are at least
/// [`RUNS_FOR_95`] values, `[min, max]` with 3 to 5, `None` with fewer than [`MIN_RUNS`].
pub fn median_interval(values: &[f64]) -> Option<MedianInterval> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = v.len();
    if n < MIN_RUNS {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mut k = 1;
    while 2 * (k + 1) <= n + 1 && order_statistic_coverage(n, k + 1) >= TARGET_COVERAGE {
        k += 1;
    }
    Some(MedianInterval {
        lo: v[k - 1],
        hi: v[n - k],
        k,
        n,
        coverage: order_statistic_coverage(n, k),
    })
}

/// How a claim's number was obtained, and so what interval it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The median over runs with its order-statistic (binomial) interval.
    #[default]
    MedianOrderStatistic,
    /// The largest (or smallest) of several medians over runs: the interval joins theirs
    /// (`[max lo, max hi]`), its coverage the Bonferroni lower bound `1 - sum (1 - c_i)`.
    ExtremeOfMedians,
    /// A deterministic computation (the worked example, an exact eigenvalue, one seeded
    /// analysis): no run-to-run spread, no interval.
    Exact,
    /// A worst case or an existence over every run (a check each run must pass, or one run
    /// suffices): the number is the extreme over all `n` runs, no interval.
    ExtremeOverRuns,
}

impl Method {
    /// In words, for claims.md.
    pub fn describe(self) -> &'static str {
        match self {
            Method::MedianOrderStatistic => "median; order-statistic (binomial) interval",
            Method::ExtremeOfMedians => {
                "extreme of medians; their order-statistic intervals joined (Bonferroni coverage)"
            }
            Method::Exact => "exact/deterministic computation",
            Method::ExtremeOverRuns => "extreme over every run (no interval)",
        }
    }
}

/// The runs a number rests on and its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Runs (or computations) the number rests on; for [`Method::ExtremeOfMedians`] the
    /// fewest runs of any of its medians.
    pub n: usize,
    /// How the number was obtained.
    pub method: Method,
    /// The interval `[lo, hi]` (`None`: too few runs, or a method without one).
    pub interval: Option<(f64, f64)>,
    /// The interval's coverage (a lower bound for [`Method::ExtremeOfMedians`]).
    pub coverage: Option<f64>,
}

impl Evidence {
    /// One deterministic computation.
    pub const EXACT: Evidence = Evidence {
        n: 1,
        method: Method::Exact,
        interval: None,
        coverage: None,
    };

    /// The median of per-run `values` (NaN: a run that could not be measured, left out).
    pub fn median_of(values: &[f64]) -> Evidence {
        let n = values.iter().filter(|x| !x.is_nan()).count();
        let ci = median_interval(values);
        Evidence {
            n,
            method: Method::MedianOrderStatistic,
            interval: ci.map(|c| (c.lo, c.hi)),
            coverage: ci.map(|c| c.coverage),
        }
    }

    /// The extreme over every one of `n` runs (no interval).
    pub fn extreme_over_runs(n: usize) -> Evidence {
        Evidence {
            n,
            method: Method::ExtremeOverRuns,
            interval: None,
            coverage: None,
        }
    }

    /// The largest of several medians (`parts`, each a [`Method::MedianOrderStatistic`]
    /// evidence): the interval `[max lo, max hi]` contains the largest true median whenever
    /// every part's interval contains its own, so its coverage is at least
    /// `1 - sum (1 - c_i)` (Bonferroni; 0 when that is negative). Too few runs in any part:
    /// no interval.
    pub fn max_of_medians(parts: &[Evidence]) -> Evidence {
        let n = parts.iter().map(|p| p.n).min().unwrap_or(0);
        let all: Option<Vec<((f64, f64), f64)>> = parts
            .iter()
            .map(|p| Some((p.interval?, p.coverage?)))
            .collect();
        let (interval, coverage) = match all {
            Some(v) if !v.is_empty() => {
                let lo = v.iter().map(|x| x.0 .0).fold(f64::NEG_INFINITY, f64::max);
                let hi = v.iter().map(|x| x.0 .1).fold(f64::NEG_INFINITY, f64::max);
                let miss: f64 = v.iter().map(|x| 1.0 - x.1).sum();
                (Some((lo, hi)), Some((1.0 - miss).max(0.0)))
            }
            _ => (None, None),
        };
        Evidence {
            n,
            method: Method::ExtremeOfMedians,
            interval,
            coverage,
        }
    }

    /// Whether a method that needs an interval lacks one for want of runs.
    pub fn too_few_runs(&self) -> bool {
        matches!(
            self.method,
            Method::MedianOrderStatistic | Method::ExtremeOfMedians
        ) && self.interval.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn binomial_cdf_matches_hand_counts() {
        // Bin(3, 1/2): 1, 3, 3, 1 over 8.
        assert!(close(binomial_half_cdf(3, 0), 1.0 / 8.0));
        assert!(close(binomial_half_cdf(3, 1), 4.0 / 8.0));
        assert!(close(binomial_half_cdf(3, 3), 1.0));
        // Bin(10, 1/2) <= 1: (1 + 10) / 1024.
        assert!(close(binomial_half_cdf(10, 1), 11.0 / 1024.0));
        // Bin(30, 1/2) <= 9: sum of C(30, i), i <= 9, over 2^30 (computed with integers).
        let mut c: u128 = 1;
        let mut s: u128 = 0;
        for i in 0..=9u128 {
            s += c;
            c = c * (30 - i) / (i + 1);
        }
        assert!(close(binomial_half_cdf(30, 9), s as f64 / 2f64.powi(30)));
    }

    #[test]
    fn min_max_coverage_is_one_minus_two_halves_to_the_n() {
        for n in 2..=12 {
            let want = 1.0 - 2.0 * 0.5f64.powi(n as i32);
            assert!(close(order_statistic_coverage(n, 1), want), "n = {n}");
        }
        assert!(close(order_statistic_coverage(3, 1), 0.75));
        assert!(close(order_statistic_coverage(5, 1), 0.9375));
        assert!(order_statistic_coverage(6, 1) > 0.95);
    }

    #[test]
    fn too_few_runs_have_no_interval() {
        assert_eq!(median_interval(&[1.0, 2.0]), None);
        assert_eq!(median_interval(&[1.0, f64::NAN, f64::NAN, 2.0]), None);
        let e = Evidence::median_of(&[1.0, 2.0]);
        assert_eq!(e.n, 2);
        assert!(e.too_few_runs());
    }

    #[test]
    fn three_to_five_runs_give_min_and_max() {
        let ci = median_interval(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((ci.lo, ci.hi, ci.k, ci.n), (1.0, 5.0, 1, 3));
        assert!(close(ci.coverage, 0.75));
        let ci = median_interval(&[4.0, 2.0, 9.0, 7.0, 1.0]).unwrap();
        assert_eq!((ci.lo, ci.hi, ci.k), (1.0, 9.0, 1));
        assert!(close(ci.coverage, 0.9375));
    }

    #[test]
    fn larger_samples_take_the_innermost_95_percent_order_statistics() {
        // n = 10: k = 2 gives 1 - 2 * 11/1024 = 0.9785; k = 3 gives 1 - 2 * 56/1024 = 0.8906.
        let v: Vec<f64> = (1..=10).map(f64::from).rev().collect();
        let ci = median_interval(&v).unwrap();
        assert_eq!((ci.lo, ci.hi, ci.k), (2.0, 9.0, 2));
        assert!(close(ci.coverage, 1.0 - 22.0 / 1024.0));
        // n = 30 (the paper's run count): k = 10, the textbook 95% interval [x_(10), x_(21)].
        let v: Vec<f64> = (1..=30).map(f64::from).collect();
        let ci = median_interval(&v).unwrap();
        assert_eq!((ci.lo, ci.hi, ci.k), (10.0, 21.0, 10));
        assert!(ci.coverage >= 0.95 && order_statistic_coverage(30, 11) < 0.95);
    }

    #[test]
    fn the_coverage_is_what_a_simulation_finds() {
        // 20 000 samples of 3 and of 10 uniform values (a fixed LCG): the interval covers the
        // true median 0.5 as often as the formula says, within 4 standard errors.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for n in [3usize, 10] {
            let trials = 20_000;
            let mut hits = 0;
            let mut cov = 0.0;
            for _ in 0..trials {
                let v: Vec<f64> = (0..n).map(|_| next()).collect();
                let ci = median_interval(&v).unwrap();
                cov = ci.coverage;
                if ci.lo <= 0.5 && 0.5 <= ci.hi {
                    hits += 1;
                }
            }
            let p = hits as f64 / trials as f64;
            let se = (cov * (1.0 - cov) / trials as f64).sqrt();
            assert!((p - cov).abs() < 4.0 * se, "n = {n}: {p} against {cov}");
        }
    }

    #[test]
    fn a_maximum_of_medians_joins_the_intervals_with_bonferroni_coverage() {
        let a = Evidence::median_of(&[1.0, 2.0, 3.0]);
        let b = Evidence::median_of(&[0.5, 4.0, 2.5, 1.0]);
        let m = Evidence::max_of_medians(&[a, b]);
        assert_eq!(m.interval, Some((1.0, 4.0)));
        assert_eq!(m.n, 3);
        assert!(close(m.coverage.unwrap(), 1.0 - 0.25 - 0.125));
        let few = Evidence::median_of(&[1.0, 2.0]);
        assert!(Evidence::max_of_medians(&[a, few]).too_few_runs());
    }
}
