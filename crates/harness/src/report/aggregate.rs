//! Medians and quartiles over runs, per strategy and epoch; `summary.csv`.

use super::input::{EpochMetrics, Experiment};
use super::interval::{median_interval, MedianInterval};
use std::fmt::Write as _;

/// The `q`-quantile (0 <= q <= 1) of `values` with linear interpolation between order
/// statistics (R's type 7, NumPy's default): position `q (n - 1)` in the sorted values.
/// Non-finite values are ignored; `None` if no finite value remains.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (pos - lo as f64) * (v[hi] - v[lo]))
}

/// The median of the finite `values` (see [`quantile`]).
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// Median and quartiles of one quantity over runs, and the order-statistic interval of the
/// median (docs/science.md §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quartiles {
    /// First quartile.
    pub q25: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q75: f64,
    /// The order-statistic interval of the median over the finite values (`None` with fewer
    /// than [`super::interval::MIN_RUNS`]).
    pub ci: Option<MedianInterval>,
}

impl Quartiles {
    /// Quartiles of the finite `values`; NaN everywhere if there are none.
    pub fn of(values: &[f64]) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        Self {
            q25: quantile(values, 0.25).unwrap_or(f64::NAN),
            median: quantile(values, 0.5).unwrap_or(f64::NAN),
            q75: quantile(values, 0.75).unwrap_or(f64::NAN),
            ci: median_interval(&finite),
        }
    }
}

/// Aggregate of one strategy at one epoch over the runs that reached it.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Epoch.
    pub epoch: usize,
    /// Strategy name.
    pub strategy: String,
    /// Number of runs with a row at this epoch.
    pub runs: usize,
    /// Loss over runs.
    pub loss: Quartiles,
    /// ||A - A0|| over runs.
    pub dist_from_start: Quartiles,
    /// ||A_Eperp|| over runs.
    pub dist_to_e: Quartiles,
}

/// Per-strategy, per-epoch aggregates of an experiment, strategy-major in display order.
pub fn summarise(exp: &Experiment) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for strategy in &exp.strategies {
        let mut epochs: Vec<usize> = exp
            .runs
            .iter()
            .filter_map(|r| r.metrics.get(strategy))
            .flat_map(|rows| rows.iter().map(|m| m.epoch))
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        for epoch in epochs {
            let at: Vec<&EpochMetrics> = exp
                .runs
                .iter()
                .filter_map(|r| r.at(strategy, epoch))
                .collect();
            let pick =
                |f: fn(&EpochMetrics) -> f64| -> Vec<f64> { at.iter().map(|m| f(m)).collect() };
            rows.push(SummaryRow {
                epoch,
                strategy: strategy.clone(),
                runs: at.len(),
                loss: Quartiles::of(&pick(|m| m.loss)),
                dist_from_start: Quartiles::of(&pick(|m| m.dist_from_start)),
                dist_to_e: Quartiles::of(&pick(|m| m.dist_to_e)),
            });
        }
    }
    rows
}

/// The summary as CSV: `epoch,strategy,runs,` then median, q25, q75 of loss,
/// dist_from_start and dist_to_e, then the order-statistic interval of each median
/// (`*_ci_lo`, `*_ci_hi`) and its coverage (`ci_coverage`; empty with fewer than 3 runs).
/// Numbers in shortest round-trip form (scientific for very small or large magnitudes), `NaN`
/// if no run had a finite value.
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let mut out = String::from(
        "epoch,strategy,runs,loss_median,loss_q25,loss_q75,\
         dist_from_start_median,dist_from_start_q25,dist_from_start_q75,\
         dist_to_e_median,dist_to_e_q25,dist_to_e_q75,\
         loss_ci_lo,loss_ci_hi,dist_from_start_ci_lo,dist_from_start_ci_hi,\
         dist_to_e_ci_lo,dist_to_e_ci_hi,ci_coverage\n",
    );
    for r in rows {
        let _ = write!(out, "{},{},{}", r.epoch, csv_field(&r.strategy), r.runs);
        for q in [&r.loss, &r.dist_from_start, &r.dist_to_e] {
            for x in [q.median, q.q25, q.q75] {
                out.push(',');
                out.push_str(&csv_number(x));
            }
        }
        for q in [&r.loss, &r.dist_from_start, &r.dist_to_e] {
            for x in [q.ci.map(|c| c.lo), q.ci.map(|c| c.hi)] {
                out.push(',');
                out.push_str(&x.map(csv_number).unwrap_or_default());
            }
        }
        out.push(',');
        let coverage = [&r.loss, &r.dist_from_start, &r.dist_to_e]
            .iter()
            .filter_map(|q| q.ci.map(|c| c.coverage))
            .reduce(f64::min);
        out.push_str(&coverage.map(csv_number).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Shortest round-trip decimal form, scientific outside [1e-3, 1e6).
fn csv_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-3..1e6).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Quotes a CSV field if it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
