//! The normalisation ablation (issue 15, section 2): experiments named
//! `norm-<base>-<normalisation>` (e.g. `norm-e1-batch`, `norm-e3-none`) gathered into one table
//! of ||A_Eperp|| at the last epoch per sampling mode, with the ratios that compare them.

use super::input::Experiment;
use super::table::{median, sci};
use eqaug_dynamics::{Sampling, StrategyKind};
use std::fmt::Write as _;

/// `(base, normalisation)` of an ablation experiment id `norm-<base>-<normalisation>`.
pub fn ablation_key(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("norm-")?;
    let (base, norm) = rest.rsplit_once('-')?;
    Some((base, norm))
}

/// Median over runs of a strategy's ||A_Eperp|| at the last epoch.
fn final_dist(exp: &Experiment, strategy: Option<&str>) -> Option<f64> {
    let s = strategy?;
    let last = exp.last_epoch();
    median(
        exp.runs
            .iter()
            .filter_map(|r| r.at(s, last).map(|m| m.dist_to_e))
            .collect(),
    )
}

/// `ablation-norm.md`, or `None` without ablation experiments.
pub fn ablation_markdown(experiments: &[Experiment]) -> Option<String> {
    let mut rows: Vec<(&str, &str, &Experiment)> = experiments
        .iter()
        .filter(|e| !e.runs.is_empty())
        .filter_map(|e| ablation_key(&e.id).map(|(b, n)| (b, n, e)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by_key(|(b, n, _)| (*b, *n));
    let mut out = String::from("# Normalisation ablation\n\n");
    let _ = writeln!(
        out,
        "||A_Eperp|| at the last epoch (median over runs) of nominal training and of augmented \
         training with per-batch, per-sample and exact draws, for each normalisation; the \
         ratios compare the sampling modes (per-sample / per-batch) and augmented with nominal \
         training (per-batch / nominal). Each row is one experiment folder with its own \
         `table.md`, figure and claims. A dash: the strategy was not run (exact averaging needs \
         an enumerable group).\n"
    );
    let _ = writeln!(
        out,
        "| experiment | normalisation | runs | epoch | nominal | per-batch | per-sample | exact | \
         per-sample / per-batch | per-batch / nominal |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let show = |x: Option<f64>| x.map_or_else(|| "–".into(), sci);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    };
    for (base, norm, e) in rows {
        let nominal = final_dist(e, e.main_strategy(StrategyKind::Nominal));
        let batch = final_dist(e, e.augmented_with_sampling(Sampling::PerBatch));
        let sample = final_dist(e, e.augmented_with_sampling(Sampling::PerSample));
        let exact = final_dist(e, e.augmented_with_sampling(Sampling::Exact));
        let _ = writeln!(
            out,
            "| {base} | {norm} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e.runs.len(),
            e.last_epoch(),
            show(nominal),
            show(batch),
            show(sample),
            show(exact),
            ratio(sample, batch),
            ratio(batch, nominal),
        );
    }
    Some(out)
}
