//! The normalisation ablation (issue 15, section 2): experiments named
//! `norm-<base>-<normalisation>` (e.g. `norm-e1-batch`, `norm-e3-none`) gathered into one table
//! of ||A_Eperp|| at the last epoch per sampling mode, with the ratios that compare them, and
//! the claims [`NORM_ABLATION_CLAIMS`] checked per base experiment (as experiment
//! `norm-<base>`).

use super::claims::{
    check_claims, ratio, relative_distance_to_e, summarise_runs, Bound, Claim, ClaimDef,
    Measurement,
};
use super::input::Experiment;
use super::interval::Evidence;
use super::table::{median, sci};
use eqaug_dynamics::{Sampling, StrategyKind};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The normalisations the ablation crosses with the sampling modes, in display order.
pub const NORMALISATIONS: [&str; 3] = ["batch", "layer", "none"];

/// `(base, normalisation)` of an ablation experiment id `norm-<base>-<normalisation>`.
pub fn ablation_key(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("norm-")?;
    let (base, norm) = rest.rsplit_once('-')?;
    Some((base, norm))
}

/// One base experiment's ablation: its `norm-<base>-<normalisation>` experiments.
#[derive(Debug, Clone)]
pub struct NormAblation {
    /// The base experiment (`e1`, `e3`).
    pub base: String,
    /// The ablation experiments by normalisation (`batch`, `layer`, `none`), with or without
    /// finished runs.
    pub by_norm: BTreeMap<String, Experiment>,
}

impl NormAblation {
    /// The experiment id its claims are reported under: `norm-<base>`.
    pub fn id(&self) -> String {
        format!("norm-{}", self.base)
    }
}

/// Groups the ablation experiments among `experiments` by base experiment (sorted by base).
pub fn group(experiments: &[Experiment]) -> Vec<NormAblation> {
    let mut groups: BTreeMap<String, NormAblation> = BTreeMap::new();
    for e in experiments {
        if let Some((base, norm)) = ablation_key(&e.id) {
            groups
                .entry(base.to_string())
                .or_insert_with(|| NormAblation {
                    base: base.to_string(),
                    by_norm: BTreeMap::new(),
                })
                .by_norm
                .insert(norm.to_string(), e.clone());
        }
    }
    groups.into_values().collect()
}

/// Picks a strategy of an experiment (`None`: not configured).
type Pick = fn(&Experiment) -> Option<&str>;

const NOMINAL: Pick = |e| e.main_strategy(StrategyKind::Nominal);
const PER_BATCH: Pick = |e| e.augmented_with_sampling(Sampling::PerBatch);
const PER_SAMPLE: Pick = |e| e.augmented_with_sampling(Sampling::PerSample);
const EXACT: Pick = |e| e.augmented_with_sampling(Sampling::Exact);

/// Per run (strategies not failed, both at the last epoch): final ||A_Eperp|| of `num` over
/// that of `den`.
fn final_ratios(exp: &Experiment, num: &str, den: &str) -> Vec<f64> {
    let last = exp.last_epoch();
    exp.runs
        .iter()
        .filter(|r| !r.failed(num) && !r.failed(den))
        .filter_map(|r| {
            Some(ratio(
                r.at(num, last)?.dist_to_e,
                r.at(den, last)?.dist_to_e,
            ))
        })
        .collect()
}

/// The per-run ratios of `num` over `den` in normalisation `norm`, or why there are none.
fn ratios_in(ab: &NormAblation, norm: &str, num: Pick, den: Pick) -> Result<Vec<f64>, String> {
    let id = format!("norm-{}-{norm}", ab.base);
    let exp = ab
        .by_norm
        .get(norm)
        .ok_or_else(|| format!("no `{id}` experiment"))?;
    let (Some(n), Some(d)) = (num(exp), den(exp)) else {
        return Err(format!("`{id}` lacks a strategy"));
    };
    let v: Vec<f64> = final_ratios(exp, n, d)
        .into_iter()
        .filter(|x| !x.is_nan())
        .collect();
    if v.is_empty() {
        Err(format!("no finished run of `{id}`"))
    } else {
        Ok(v)
    }
}

fn no_data(missing: &[String]) -> Measurement {
    Measurement {
        value: f64::NAN,
        note: format!("no data: {}", missing.join("; ")),
        evidence: Evidence::median_of(&[]),
    }
}

fn runs_note(ab: &NormAblation) -> String {
    NORMALISATIONS
        .iter()
        .filter_map(|n| ab.by_norm.get(*n).map(|e| format!("{n} {}", e.runs.len())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Max over normalisations and stochastic sampling modes of the median final ratio
/// augmented / nominal.
fn sampled_below_nominal(ab: &NormAblation) -> Measurement {
    let (mut cells, mut missing, mut worst) = (Vec::new(), Vec::new(), f64::NEG_INFINITY);
    let mut parts = Vec::new();
    for norm in NORMALISATIONS {
        for (mode, pick) in [("per-batch", PER_BATCH), ("per-sample", PER_SAMPLE)] {
            match ratios_in(ab, norm, pick, NOMINAL) {
                Ok(v) => {
                    parts.push(Evidence::median_of(&v));
                    let m = median(v).unwrap_or(f64::NAN);
                    worst = worst.max(m);
                    cells.push(format!("{norm} {mode} {}", sci(m)));
                }
                Err(why) => missing.push(why),
            }
        }
    }
    if !missing.is_empty() {
        return no_data(&missing);
    }
    Measurement {
        value: worst,
        note: format!(
            "medians over runs ({}) at the last epoch: {}",
            runs_note(ab),
            cells.join(", ")
        ),
        evidence: Evidence::max_of_medians(&parts),
    }
}

/// Max over normalisations of the exact strategy's median ||A_Eperp|| / ||A - A0||.
fn exact_in_e(ab: &NormAblation) -> Option<Measurement> {
    if !ab.by_norm.values().any(|e| EXACT(e).is_some()) {
        return None;
    }
    let (mut cells, mut missing, mut worst) = (Vec::new(), Vec::new(), f64::NEG_INFINITY);
    let mut parts = Vec::new();
    for norm in NORMALISATIONS {
        let id = format!("norm-{}-{norm}", ab.base);
        let Some(exp) = ab.by_norm.get(norm) else {
            missing.push(format!("no `{id}` experiment"));
            continue;
        };
        let Some(s) = EXACT(exp) else {
            missing.push(format!("`{id}` has no exact strategy"));
            continue;
        };
        let m = relative_distance_to_e(exp, s);
        if m.value.is_nan() {
            missing.push(format!("no finished run of `{id}`"));
        } else {
            worst = worst.max(m.value);
            parts.push(m.evidence);
            cells.push(format!("{norm} {}", sci(m.value)));
        }
    }
    if !missing.is_empty() {
        return Some(no_data(&missing));
    }
    Some(Measurement {
        value: worst,
        note: format!(
            "medians over runs ({}) at the last epoch: {}",
            runs_note(ab),
            cells.join(", ")
        ),
        evidence: Evidence::max_of_medians(&parts),
    })
}

/// Per-run ratios per-sample / per-batch without batch statistics (layer norm, none).
fn uncoupled_ratios(ab: &NormAblation) -> Vec<f64> {
    ["layer", "none"]
        .iter()
        .filter_map(|n| ratios_in(ab, n, PER_SAMPLE, PER_BATCH).ok())
        .flatten()
        .collect()
}

fn uncoupled_range(ab: &NormAblation) -> Bound {
    let v = uncoupled_ratios(ab);
    if v.is_empty() {
        return Bound::Within(f64::NAN, f64::NAN);
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Three significant digits, rounded outwards (widens the range by at most 0.1%).
    let digits = |x: f64| 10f64.powi(2 - x.abs().log10().floor() as i32);
    let out = |x: f64, round: fn(f64) -> f64| {
        if x == 0.0 || !x.is_finite() {
            x
        } else {
            round(x * digits(x)) / digits(x)
        }
    };
    Bound::Within(out(lo, f64::floor), out(hi, f64::ceil))
}

fn batch_norm_per_sample(ab: &NormAblation) -> Measurement {
    let mut missing = Vec::new();
    let batch = ratios_in(ab, "batch", PER_SAMPLE, PER_BATCH).map_err(|e| missing.push(e));
    let mut reference = Vec::new();
    for norm in ["layer", "none"] {
        match ratios_in(ab, norm, PER_SAMPLE, PER_BATCH) {
            Ok(v) => reference.extend(v),
            Err(why) => missing.push(why),
        }
    }
    let Ok(batch) = batch else {
        return no_data(&missing);
    };
    if !missing.is_empty() {
        return no_data(&missing);
    }
    let m = summarise_runs(batch, ab.by_norm["batch"].runs.len(), "of batch norm");
    Measurement {
        value: m.value,
        evidence: m.evidence,
        note: format!(
            "{}; per-run ratios without batch statistics: {}",
            m.note,
            reference
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The claims on one base experiment's ablation, reported as experiment `norm-<base>`. A
/// missing normalisation, strategy or run makes a claim "no data", never PASS.
pub const NORM_ABLATION_CLAIMS: &[ClaimDef<NormAblation>] = &[
    ClaimDef {
        id: "norm-sampled-below-nominal",
        statement: "Whatever the normalisation (batch, layer, none) and whether the group \
                    element is drawn per mini-batch or per sample, augmented training ends far \
                    closer to E than nominal training: final ||A_Eperp|| of augmented / that of \
                    nominal (per run, median over runs), the largest over the 3 normalisations \
                    x 2 sampling modes. Theory: E is invariant in expectation for both draws \
                    (with batch norm by the batch-level argument: the joint law of the draws is \
                    invariant under one global element), so augmented training leaves E only \
                    by sampling noise; the bound is claim 2's (docs/science.md §5).",
        bound: |_| Bound::AtMost(0.5),
        measure: |ab| Some(sampled_below_nominal(ab)),
    },
    ClaimDef {
        id: "norm-exact-in-E",
        statement: "Exact augmentation (every mini-batch transformed by each group element in \
                    turn, the gradients averaged) stays in E to f32 round-off with every \
                    normalisation, batch norm included: one element moves a whole mini-batch, \
                    so its statistics move with it and the averaged gradient is equivariant \
                    (Corollary 1). Measured: ||A_Eperp|| / ||A - A0|| at the last epoch (median \
                    over runs), the largest over the normalisations; bound as `exact-aug-in-E`.",
        bound: |_| Bound::AtMost(1e-3),
        measure: exact_in_e,
    },
    ClaimDef {
        id: "norm-batch-per-sample",
        statement: "With batch normalisation, per-sample draws (which mix different \
                    transformations inside one mini-batch's statistics) end no farther from E, \
                    relative to per-batch draws, than without batch statistics: the per-run \
                    ratio final ||A_Eperp|| per-sample / per-batch with batch norm (median over \
                    runs) lies within the range of the same per-run ratios with layer norm and \
                    without normalisation (the run-to-run spread when no statistics couple the \
                    samples; bounds rounded outwards to 3 digits).",
        bound: uncoupled_range,
        measure: |ab| Some(batch_norm_per_sample(ab)),
    },
];

/// Checks [`NORM_ABLATION_CLAIMS`] on every base experiment's ablation.
pub fn claims(groups: &[NormAblation]) -> Vec<Claim> {
    groups
        .iter()
        .flat_map(|g| check_claims(NORM_ABLATION_CLAIMS, g, &g.id()))
        .collect()
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

/// One row of the ablation table: medians of the final ||A_Eperp||.
struct Row<'a> {
    base: &'a str,
    norm: &'a str,
    exp: &'a Experiment,
    nominal: Option<f64>,
    batch: Option<f64>,
    sample: Option<f64>,
    exact: Option<f64>,
}

fn rows(groups: &[NormAblation]) -> Vec<Row<'_>> {
    groups
        .iter()
        .flat_map(|g| g.by_norm.iter().map(move |(n, e)| (g.base.as_str(), n, e)))
        .filter(|(_, _, e)| !e.runs.is_empty())
        .map(|(base, norm, e)| Row {
            base,
            norm,
            exp: e,
            nominal: final_dist(e, NOMINAL(e)),
            batch: final_dist(e, PER_BATCH(e)),
            sample: final_dist(e, PER_SAMPLE(e)),
            exact: final_dist(e, EXACT(e)),
        })
        .collect()
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// `ablation-norm.md` (the table, then `claims`), or `None` without ablation runs.
pub fn ablation_markdown(groups: &[NormAblation], claims: &[Claim]) -> Option<String> {
    let rows = rows(groups);
    if rows.is_empty() {
        return None;
    }
    let mut out = String::from("# Normalisation ablation\n\n");
    let _ = writeln!(
        out,
        "||A_Eperp|| at the last epoch (median over runs) of nominal training and of augmented \
         training with per-batch, per-sample and exact draws, for each normalisation; the \
         ratios compare the sampling modes (per-sample / per-batch) and augmented with nominal \
         training (per-batch / nominal). Each row is one experiment folder with its own \
         `table.md`, figure and claims. A dash: the strategy was not run (exact averaging needs \
         an enumerable group). The stability of E with each normalisation (H_perp's extreme \
         eigenvalues at the stationary points reached from the same seeds, `eqaug stability` \
         with the configs' `stability` profile) is in [stability/stability.md](stability/stability.md), \
         section \"Batch norm, layer norm and no normalisation\".\n"
    );
    let _ = writeln!(
        out,
        "| experiment | normalisation | runs | epoch | nominal | per-batch | per-sample | exact | \
         per-sample / per-batch | per-batch / nominal |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let show = |x: Option<f64>| x.map_or_else(|| "–".into(), sci);
    let show_ratio = |x: Option<f64>| x.map_or_else(|| "–".into(), |r| format!("{r:.2}"));
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.base,
            r.norm,
            r.exp.runs.len(),
            r.exp.last_epoch(),
            show(r.nominal),
            show(r.batch),
            show(r.sample),
            show(r.exact),
            show_ratio(div(r.sample, r.batch)),
            show_ratio(div(r.batch, r.nominal)),
        );
    }
    if !claims.is_empty() {
        let _ = writeln!(
            out,
            "\n## Claims\n\nChecked per base experiment (as experiment `norm-<base>`; also in \
             [claims.md](claims.md)).\n"
        );
        let _ = writeln!(
            out,
            "| result | experiment | claim | measured | runs, interval (coverage) | bound | detail |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---|---|---|");
        for c in claims {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} | {} | {} |",
                c.status.label(),
                c.experiment,
                c.id,
                c.measured_text(),
                c.evidence_text(),
                c.bound,
                c.note.as_deref().unwrap_or("").replace('|', "\\|"),
            );
        }
    }
    Some(out)
}

/// `lo–hi` of the values (each shown with `f`), or `None` without values.
fn span(values: impl Iterator<Item = f64>, f: fn(f64) -> String) -> Option<String> {
    let v: Vec<f64> = values.collect();
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some(if f(lo) == f(hi) {
        f(lo)
    } else {
        format!("{}–{}", f(lo), f(hi))
    })
}

/// The paragraph `report.md` shows for the ablation (its numbers, a link to
/// `ablation-norm.md` and the claims' results), or `None` without ablation runs.
pub fn ablation_summary(groups: &[NormAblation], claims: &[Claim]) -> Option<String> {
    let rows = rows(groups);
    if rows.is_empty() {
        return None;
    }
    let two = |x: f64| format!("{x:.2}");
    let bases: Vec<&str> = groups.iter().map(|g| g.base.as_str()).collect();
    let mut out = format!(
        "## Normalisation ablation\n\n{} with batch / layer / no normalisation, crossed with \
         per-batch / per-sample / exact draws ([ablation-norm.md](ablation-norm.md); each \
         combination also has its own `norm-<base>-<normalisation>` section above).",
        bases.join(" and ")
    );
    let per_batch: fn(&Row) -> Option<f64> = |r| div(r.batch, r.nominal);
    let per_sample: fn(&Row) -> Option<f64> = |r| div(r.sample, r.nominal);
    for (label, pick) in [("per-batch", per_batch), ("per-sample", per_sample)] {
        if let Some(s) = span(rows.iter().filter_map(pick), two) {
            let _ = write!(
                out,
                " With {label} draws augmented training ends at {s} of nominal training's \
                 ||A_Eperp|| (last epoch, medians over runs)."
            );
        }
    }
    if let Some(s) = span(rows.iter().filter_map(|r| div(r.sample, r.batch)), two) {
        let bn: Vec<String> = rows
            .iter()
            .filter(|r| r.norm == "batch")
            .filter_map(|r| div(r.sample, r.batch).map(|x| format!("{} {x:.2}", r.base)))
            .collect();
        let _ = write!(
            out,
            " Per-sample / per-batch is {s} over all normalisations{}.",
            if bn.is_empty() {
                String::new()
            } else {
                format!(" (with batch norm: {})", bn.join(", "))
            }
        );
    }
    let exact: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.exact.map(|x| {
                format!(
                    "{} {} {} (nominal {})",
                    r.base,
                    r.norm,
                    sci(x),
                    r.nominal.map_or("–".into(), sci)
                )
            })
        })
        .collect();
    if !exact.is_empty() {
        let _ = write!(
            out,
            " Exact averaging ends at ||A_Eperp|| = {}.",
            exact.join(", ")
        );
    }
    let _ = writeln!(
        out,
        " Ablation claims: {}.\n",
        super::claims::status_counts(claims)
    );
    Some(out)
}
