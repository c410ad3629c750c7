//! The stability section of the report (docs/science.md §10): a table over the analysed
//! experiments and runs, predicted against measured escape rates, the SLQ spectral densities
//! as an SVG figure, checked claims, and a paragraph stating what was found.
//!
//! Input: `DIR/<experiment>/stability.json` written by `eqaug stability` (see
//! [`crate::stability::StabilityOutput`]); output: `stability.md` and `stability.svg`.

use super::claims::{Bound, Claim};
use super::error::{write_file, ReportError};
use super::interval::Evidence;
pub use crate::schema::outputs::{STABILITY_MD, STABILITY_SVG};
use crate::stability::{RunStability, StabilityOutput, STABILITY_JSON};
use eqaug_dynamics::stability::{StabilityReport, Verdict};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Reads every `dir/*/stability.json`, in folder order.
pub fn load(dir: &Path) -> Result<Vec<StabilityOutput>, ReportError> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(STABILITY_JSON).is_file())
        .collect();
    folders.sort();
    folders
        .iter()
        .map(|f| crate::schema::read_json(&f.join(STABILITY_JSON)).map_err(ReportError::from))
        .collect()
}

fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if !x.is_finite() {
        format!("{x}")
    } else {
        format!("{x:.3e}")
    }
}

fn verdict(r: &StabilityReport) -> &'static str {
    match r.verdict {
        Verdict::NotStationary => "not decided: A* not stationary (budget)",
        Verdict::Stable => "stable",
        Verdict::Flat => "flat: H_perp = mu (saturated or collapsed network), no verdict",
        Verdict::UnstableOffE => "**unstable off E** (minimum in E, saddle of R_aug)",
        Verdict::UnstableInE => "unstable already in E",
        Verdict::Unresolved => "unresolved: lowest Ritz value not converged",
        Verdict::EstimateOnly => "negative only in the sampled estimate of H_perp: no verdict",
        Verdict::UnstableOffESampled => {
            "**unstable off E** (held-out Rayleigh quotient of the estimate's Ritz vector < 0)"
        }
    }
}

/// The claims of the stability analysis: escape rates against the linearised prediction, the
/// random direction inside its bracket, the vanishing off-diagonal block, and the worked
/// example's eigenvalues.
pub fn claims(outputs: &[StabilityOutput]) -> Vec<Claim> {
    let mut out = normalisation_claims(outputs);
    for o in outputs {
        let exp = o.experiment.as_str();
        if exp == "worked-example" {
            out.extend(worked_example_claims(o));
        }
        for run in &o.runs {
            out.extend(run_claims(exp, run));
        }
    }
    out
}

/// A measured claim without a note.
fn claim(id: &str, exp: &str, statement: String, measured: f64, bound: Bound) -> Claim {
    Claim::measured(id, exp, statement, measured, bound, Evidence::EXACT, None)
}

/// The claims of the normalisation ablations (issue 15).
fn normalisation_claims(outputs: &[StabilityOutput]) -> Vec<Claim> {
    let mut out = Vec::new();
    // Issue 15: with batch norm and with layer norm alike, the stationary points reached
    // include saddles of R_aug; the bound asks for a negative eigenvalue ten times beyond the
    // verdict's noise level, so that it is not a matter of the stationarity tolerance.
    for (base, norms) in normalisation_sets(outputs) {
        for (norm, o) in norms {
            if !matches!(norm.as_str(), "batch" | "layer") {
                continue;
            }
            // Per-sample against per-batch draws along the softest E-perp direction: the
            // difference against its error (4 standard errors of the per-sample mean plus the
            // noise level to which lambda_min is known).
            let diffs: Vec<(usize, f64, String)> = o
                .runs
                .iter()
                .filter(|r| r.report.converged)
                .filter_map(|r| {
                    let q = r.report.per_sample_rayleigh.as_ref()?;
                    let b = &r.report.perp_block;
                    let err = 4.0 * q.standard_error + b.noise;
                    Some((
                        r.run,
                        (q.mean - b.min).abs() / err,
                        format!(
                            "run {}: {} +- {} against {}",
                            r.run,
                            sci(q.mean),
                            sci(q.standard_error),
                            sci(b.min)
                        ),
                    ))
                })
                .collect();
            if let Some(worst) = diffs.iter().map(|d| d.1).reduce(f64::max) {
                let text: Vec<&str> = diffs.iter().map(|d| d.2.as_str()).collect();
                out.push(claim(
                    "norm-per-sample-curvature",
                    &o.experiment,
                    format!(
                        "norm-{base} with {norm} norm: per-sample draws give the same curvature along the lowest eigenvector v of H_perp as per-batch draws: |mean v^T H_k v (per-sample) - lambda_min (per-batch)| / (4 standard errors + noise), the largest over the runs ({})",
                        text.join("; ")
                    ),
                    worst,
                    Bound::AtMost(1.0),
                )
                .with_evidence(Bound::AtMost(1.0), Evidence::extreme_over_runs(diffs.len())));
            }
            if let Some((ratio, run)) = most_negative_perp(o) {
                let per_run: Vec<String> = o
                    .runs
                    .iter()
                    .map(|r| format!("run {} {}", r.run, sci(r.report.perp_block.min)))
                    .collect();
                out.push(claim(
                    "norm-hperp-negative",
                    &o.experiment,
                    format!(
                        "norm-{base} with {norm} norm: the most negative lambda_min(H_perp) over the runs (run {run}), in units of its noise level (exact C_4 average, dense H_perp; per run: {}): a saddle of R_aug with this normalisation",
                        per_run.join(", ")
                    ),
                    ratio,
                    Bound::AtMost(-10.0),
                )
                .with_evidence(
                    Bound::AtMost(-10.0),
                    Evidence::extreme_over_runs(o.runs.len()),
                ));
            }
        }
    }
    out
}

/// The worked example's eigenvalues on E and E-perp (its first run).
fn worked_example_claims(o: &StabilityOutput) -> Vec<Claim> {
    let mut out = Vec::new();
    let exp = o.experiment.as_str();

    if let Some(run) = o.runs.first() {
        let r = &run.report;
        let perp = (std::f64::consts::LN_2 - 1.0) / 2.0;
        out.push(claim(
            "stability-worked-example-e",
            exp,
            "eqaug stability on the worked example: lambda on E is 1/2 (twice the 1/4 of docs/science.md §1.4: the network's loss is the MSE)".into(),
            r.e_block.min,
            Bound::Near(0.5, 1e-6),
        ));
        out.push(claim(
            "stability-worked-example-perp",
            exp,
            "eqaug stability on the worked example: lambda on E-perp is (ln 2 - 1)/2 (twice the (ln 2 - 1)/4 of docs/science.md §1.4)".into(),
            r.perp_block.min,
            Bound::Near(perp, 1e-6),
        ));
    }
    out
}

/// The claims of one analysed run of experiment `exp`: the vanishing off-diagonal block and,
/// where the prediction is testable, the escape rates.
fn run_claims(exp: &str, run: &RunStability) -> Vec<Claim> {
    let mut out = Vec::new();

    let r = &run.report;
    if let Some(od) = r.off_diagonal {
        out.push(claim(
            "stability-block-diagonal",
            exp,
            format!(
                "run {}: at A* the E -> E-perp block of Hess R_aug vanishes (||Pi_perp H v|| / ||H v||, v random in E; docs/science.md §10(d)); the bound is what the Hessian-vector products' error level allows ({} products)",
                run.run,
                r.hvp.name()
            ),
            od,
            // records of central-difference runs before the bound was kept: their 1e-6
            Bound::AtMost(r.off_diagonal_bound.unwrap_or(1e-6)),
        ));
    }
    // The linearised prediction holds at a stationary point along an eigenvector: test
    // it only where the search converged and the Ritz pair is accurate (no data is not
    // a pass; the measured numbers stay in the tables).
    if !prediction_testable(r) {
        return out;
    }
    if let Some(e) = &r.escape_min {
        if let (Some(err), Some(p)) = (e.rate_relative_error, e.predicted_factor) {
            out.push(claim(
                "stability-escape-rate",
                exp,
                format!(
                    "run {}: exact-average augmented GD from A* + delta v (v the Ritz vector of lambda_min(H_perp) = {}, eta {}): per-step factor of ||A_Eperp|| {} against predicted 1 - eta lambda = {}; relative error of the rate (factor - 1)",
                    run.run, sci(r.perp_block.min), sci(e.eta), e.measured_factor, p
                ),
                err,
                Bound::AtMost(0.05),
            ));
        }
    }
    if let Some(e) = &r.escape_random {
        if let Some((lo, hi)) = e.predicted_range {
            // The same 5% tolerance on rates (factor - 1) as the Ritz-direction claim.
            let tol = 0.05 * (lo - 1.0).abs().max((hi - 1.0).abs());
            out.push(claim(
                "stability-escape-random",
                exp,
                format!(
                    "run {}: from a random E-perp direction the per-step factor lies between the predictions 1 - eta lambda of lambda_max and lambda_min of H_perp (widened by 5% of the largest rate)",
                    run.run
                ),
                e.measured_factor,
                Bound::Within(lo - tol, hi + tol),
            ));
        }
    }
    out
}

/// The analyses of normalisation ablations (`norm-<base>-<normalisation>`), by base in
/// folder order: `(base, [(normalisation, output)])`.
fn normalisation_sets(
    outputs: &[StabilityOutput],
) -> Vec<(String, Vec<(String, &StabilityOutput)>)> {
    let mut sets: Vec<(String, Vec<(String, &StabilityOutput)>)> = Vec::new();
    for o in outputs {
        let Some(rest) = o.experiment.strip_prefix("norm-") else {
            continue;
        };
        let Some((base, norm)) = rest.rsplit_once('-') else {
            continue;
        };
        match sets.iter_mut().find(|(b, _)| b == base) {
            Some((_, v)) => v.push((norm.to_string(), o)),
            None => sets.push((base.to_string(), vec![(norm.to_string(), o)])),
        }
    }
    sets
}

/// `lambda_min(H_perp) / noise` of the run with the lowest ratio (exactly averaged, converged
/// runs only), with that run's index; `None` without such runs.
fn most_negative_perp(o: &StabilityOutput) -> Option<(f64, usize)> {
    o.runs
        .iter()
        .filter(|r| r.report.converged && r.report.perp_exact)
        .map(|r| {
            let b = &r.report.perp_block;
            (b.min / b.noise.max(f64::MIN_POSITIVE), r.run)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// The normalisation section (issue 15): H_perp with batch norm, layer norm and none, per run
/// at the stationary point each reaches from the same initialisation seeds.
fn normalisation_markdown(outputs: &[StabilityOutput]) -> Option<String> {
    let sets = normalisation_sets(outputs);
    if sets.is_empty() {
        return None;
    }
    let mut s = String::from(
        "\n## Batch norm, layer norm and no normalisation (issue 15)\n\n\
         The normalisation ablation's configs (`experiments/norm-<base>-<normalisation>.toml`) \
         share data, group, ridge, initialisation seeds and the network up to its normalisation \
         layer, so each row pair compares the stationary points the three networks reach from \
         the same start. They are different risks, so they cannot share a stationary point: \
         what is compared is the spectrum at the point each reaches. Batch norm couples the \
         samples of a mini-batch (statistics over mini-batch x positions), layer norm acts per \
         sample; the exactly averaged R_aug transforms every mini-batch as a whole, so both keep \
         E invariant and the Hessian block-diagonal there (the off-diagonal column). Noise = \
         max(residual, 1e-7 max|lambda|), the verdict threshold; lambda_min / noise below -1 is \
         a negative eigenvalue beyond it.\n\n\
         Per-sample draws: with the paper's per-batch draws every sample of a mini-batch is \
         moved by the same element and batch statistics move with it; with per-sample draws \
         they mix different transformations. At A* both expected risks are stationary (the \
         joint law of the draws is invariant under one global element), so the question is \
         their curvature: the column gives v^T H_k v for the lowest eigenvector v of the \
         per-batch H_perp, averaged over K random per-sample assignments of the 4 rotations to \
         the data rows (+- its standard error), against lambda_min = v^T H_perp v. Without batch \
         statistics (layer norm, none) the loss is a sum over samples and the two expectations \
         are equal exactly (a test checks this with a Latin design), so there the column is a \
         check of the estimate.\n\n\
         | base | normalisation | run | loss at A* | norm of A* | lambda_min / lambda_max on E | lambda_min / lambda_max of H_perp | lambda_min / noise | negatives beyond noise (E-perp) | off-diagonal | per-sample v^T H v (K) | verdict |\n\
         |---|---|---:|---:|---:|---|---|---:|---:|---:|---|---|\n",
    );
    for (base, norms) in &sets {
        for (norm, o) in norms {
            for run in &o.runs {
                let r = &run.report;
                let b = &r.perp_block;
                let _ = writeln!(
                    s,
                    "| {base} | {norm} | {} | {:.6} | {} | {} / {}{} | {} / {}{} | {:.1} | {} of {} | {} | {} | {} |",
                    run.run,
                    r.loss,
                    sci(r.norm_a_star),
                    sci(r.e_block.min),
                    sci(r.e_block.max),
                    if r.e_block.dense { " (dense)" } else { "" },
                    sci(b.min),
                    sci(b.max),
                    if b.dense { " (dense)" } else { "" },
                    b.min / b.noise.max(f64::MIN_POSITIVE),
                    b.negative_beyond_noise,
                    b.ritz_values.len(),
                    r.off_diagonal.map_or("-".into(), sci),
                    r.per_sample_rayleigh.as_ref().map_or("-".into(), |q| format!(
                        "{} +- {} ({})",
                        sci(q.mean),
                        sci(q.standard_error),
                        q.values.len()
                    )),
                    verdict(r)
                );
            }
        }
        let summary: Vec<String> = norms
            .iter()
            .map(|(norm, o)| {
                let unstable = o
                    .runs
                    .iter()
                    .filter(|r| r.report.verdict == Verdict::UnstableOffE)
                    .count();
                let marginal = o
                    .runs
                    .iter()
                    .filter(|r| {
                        let b = &r.report.perp_block;
                        r.report.verdict == Verdict::UnstableOffE && b.min > -20.0 * b.noise
                    })
                    .count();
                let stable = o
                    .runs
                    .iter()
                    .filter(|r| r.report.verdict == Verdict::Stable)
                    .count();
                format!(
                    "{norm}: {unstable} of {} a saddle of R_aug (unstable off E; {marginal} of them with lambda_min within 20 x the noise level, where the escape is not tested), {stable} stable",
                    super::runs_text(o.runs.len())
                )
            })
            .collect();
        let _ = writeln!(s, "\n{base}: {}.", summary.join("; "));
    }
    Some(s)
}

/// Whether the escape prediction applies: `A*` met its tolerance, the Ritz residual of
/// `lambda_min(H_perp)` is at most a tenth of `|lambda_min|`, and the noise level is at most
/// 5% of `|lambda_min|`: at a residual `r` the landscape, and so `lambda_min`, is known only to
/// about the noise (docs/science.md §10(b)), and the claim's tolerance is 5% of the rate `eta lambda`.
pub fn prediction_testable(r: &StabilityReport) -> bool {
    let b = &r.perp_block;
    r.converged && b.min_residual <= 0.1 * b.min.abs() && b.noise <= 0.05 * b.min.abs()
}

/// `stability.md`: the paragraph, the table, the escapes and the figure link.
pub fn markdown(outputs: &[StabilityOutput], figure: Option<&str>) -> String {
    let mut s = String::from("# Stability of the stationary points in E (docs/science.md §10)\n\n");
    let _ = writeln!(s, "{}\n", paragraph(outputs));
    write_method(&mut s);
    write_spectra_table(&mut s, outputs);
    write_escapes(&mut s, outputs);
    if let Some(n) = normalisation_markdown(outputs) {
        s.push_str(&n);
    }
    write_cost_table(&mut s, outputs);
    if let Some(f) = figure {
        let _ = writeln!(
            s,
            "\n## Spectral densities\n\nStochastic Lanczos quadrature (every Lanczos run a start; \
             Gaussian smoothing of width 1% of max|lambda|; a block computed densely contributes every \
             eigenvalue with equal weight), eigenvalues divided by max|lambda| of the experiment: \
             Hess R_eqv on E (green), H_perp on E-perp (blue).\n\n![stability densities]({f})"
        );
    }
    s
}

/// `stability.md`: how the analysis was made and how to read the table.
fn write_method(s: &mut String) {
    let _ = writeln!(
        s,
        "Written by `eqaug stability CONFIG` (f64; exact Hessian-vector products, Pearlmutter's \
         R-operator through every layer, unless the configuration asks for central differences; \
         Lanczos with full reorthogonalisation). Residual: `||Pi_E grad R||` at A* (and relative \
         to its start). Kink: the smallest |pre-activation| at a LeakyReLU input over the data \
         (none for smooth activations); the Hessian does not exist at a kink (away from it a \
         LeakyReLU's second derivative is zero, which the exact product uses). lambda +- e: \
         extreme Ritz values with a bound on their error, the Ritz residual plus the HVP's error \
         level (an eigenvalue lies within the residual of a Ritz value). The HVP's error level is \
         round-off for exact products (10 times the largest asymmetry |v'Hw - w'Hv| over three \
         random pairs, at least 64 u max|lambda|; column `HVP error` below) and 1e-7 max|lambda| \
         for central differences. Negatives: Ritz values of the first run below 0 / below -noise, \
         noise = max(residual, HVP error level) (docs/science.md §10(b)). H_perp of groups \
         larger than `exact_limit` is an estimate from M sampled elements, its sampling error \
         the difference between two independent samples; its lowest eigenvalue is biased \
         downwards (a minimum over the sampling noise), so a negative one decides nothing by \
         itself: the held-out Rayleigh quotient v^T H_k v of its Ritz vector v under K further \
         independent samples H_k is unbiased for v^T H_perp v >= lambda_min(H_perp), and a mean \
         more than 4 standard errors below -noise (p < 0.001) proves a negative eigenvalue of \
         the exact H_perp. Where dim E is at most `dense_limit` (dense), the E block is the whole \
         spectrum of the dense Hessian on E in the orbit basis (dim E HVPs); its +- is then the \
         spectral norm of the computed block's asymmetry plus sqrt(dim) times the HVP's error \
         level (Weyl: eigenvalues move by at most the norm of the error matrix, at most its \
         Frobenius norm); likewise H_perp where the group is averaged exactly and dim E-perp is at most \
         `perp_dense_limit` (dim E-perp HVPs in a Helmert basis of each orbit's zero-sum \
         vectors). The stationary point: L-BFGS on E, then \
         trust-region Newton on E (the whole Hessian on E in an orthonormal orbit basis with exact, \
         Jacobi-scaled trust-region steps when dim E is at most `dense_limit`; Steihaug-Toint \
         conjugate gradients above it). Where a ridge mu/2 ||A||^2 is added (`weight_decay`, column \
         mu below; it makes the minimum finite where the data are separable or a normalisation \
         makes weights scale-invariant), every eigenvalue includes mu: H_perp is then the \
         Hessian of the regularised augmented risk, whose negative eigenvalues must exceed mu in \
         size before the unregularised H_perp has them.\n"
    );
}

/// `stability.md`: the table of residuals, kinks and extreme eigenvalues per run.
fn write_spectra_table(s: &mut String, outputs: &[StabilityOutput]) {
    let _ = writeln!(
        s,
        "| experiment | run | group (H_perp) | residual (rel.) | kink | lambda_min / lambda_max on E | lambda_min / lambda_max of H_perp | negatives E; E-perp | verdict | time |\n|---|---:|---|---|---|---|---|---|---|---:|"
    );
    for o in outputs {
        for run in &o.runs {
            let r = &run.report;
            let group = if r.perp_exact {
                format!("{} (exact, {} el.)", o.group, r.perp_elements)
            } else {
                let err = r.sampling_error.as_ref().map_or(String::new(), |e| {
                    format!(", +- {} / {}", sci(e.min_difference), sci(e.max_difference))
                });
                let q = r.held_out_rayleigh.as_ref().map_or(String::new(), |q| {
                    format!(
                        "; held-out Rayleigh quotient {} +- {} (K = {})",
                        sci(q.mean),
                        sci(q.standard_error),
                        q.values.len()
                    )
                });
                format!("{} (estimate, M = {}{err}{q})", o.group, r.perp_elements)
            };
            let dense = if r.e_block.dense {
                format!(" (dense, all {})", r.e_block.steps)
            } else {
                String::new()
            };
            let dense_perp = if r.perp_block.dense {
                format!(" (dense, all {})", r.perp_block.steps)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} ({}) | {} | {} +- {} / {} +- {}{dense} | {} +- {} / {} +- {}{dense_perp} | {}/{}; {}/{} | {} | {:.1} s |",
                o.experiment,
                run.run,
                group,
                sci(r.residual),
                sci(r.residual / r.residual_start.max(f64::MIN_POSITIVE)),
                r.kink_distance.map_or("none".into(), sci),
                sci(r.e_block.min),
                sci(bound(r.e_block.min_error, r.e_block.min_residual)),
                sci(r.e_block.max),
                sci(bound(r.e_block.max_error, r.e_block.max_residual)),
                sci(r.perp_block.min),
                sci(bound(r.perp_block.min_error, r.perp_block.min_residual)),
                sci(r.perp_block.max),
                sci(bound(r.perp_block.max_error, r.perp_block.max_residual)),
                r.e_block.negative,
                r.e_block.negative_beyond_noise,
                r.perp_block.negative,
                r.perp_block.negative_beyond_noise,
                verdict(r),
                run.wall_seconds
            );
        }
    }
}

/// The "+-" of an eigenvalue: its error bound (records written before the bound existed carry
/// 0 there, and only the residual).
fn bound(error: f64, residual: f64) -> f64 {
    if error > 0.0 {
        error
    } else {
        residual
    }
}

/// `stability.md`: predicted against measured escape.
fn write_escapes(s: &mut String, outputs: &[StabilityOutput]) {
    let _ = writeln!(
        s,
        "\n## Predicted against measured escape\n\n\
         Exact-average augmented gradient descent from A* + delta v, delta = 1e-4 max(1, ||A*||): \
         per-step factor of ||A_Eperp|| (geometric mean over the steps while it is small) against \
         the linearised prediction 1 - eta lambda (docs/science.md §10). Only for exactly averaged \
         groups. The prediction is tested (a claim) only where A* met its tolerance, the Ritz \
         residual of lambda_min(H_perp) is at most 0.1 |lambda_min| and the noise level at most \
         0.05 |lambda_min| (lambda_min is known only to about the noise, and the claim's tolerance \
         is 5% of the rate).\n\n\
         | experiment | run | direction | eta | predicted | measured | rate error | tested |\n|---|---:|---|---:|---|---:|---:|---|"
    );
    for o in outputs {
        for run in &o.runs {
            for e in [&run.report.escape_min, &run.report.escape_random]
                .into_iter()
                .flatten()
            {
                let pred = match (e.predicted_factor, e.predicted_range) {
                    (Some(p), _) => format!("{p:.9}"),
                    (None, Some((lo, hi))) => format!("in [{lo:.9}, {hi:.9}]"),
                    _ => "-".into(),
                };
                let b = &run.report.perp_block;
                let tested = if prediction_testable(&run.report) {
                    "yes"
                } else if !run.report.converged {
                    "no: A* not stationary"
                } else if b.min_residual > 0.1 * b.min.abs() {
                    "no: Ritz pair not converged"
                } else {
                    "no: lambda_min within 20 x the noise level"
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.9} | {} | {tested} |",
                    o.experiment,
                    run.run,
                    e.direction,
                    sci(e.eta),
                    pred,
                    e.measured_factor,
                    e.rate_relative_error.map_or("-".into(), sci)
                );
            }
        }
    }
}

/// `stability.md`: the configuration and cost of every run.
fn write_cost_table(s: &mut String, outputs: &[StabilityOutput]) {
    let _ = writeln!(s, "\n## Configuration and cost\n");
    let _ = writeln!(
        s,
        "| experiment | profile | samples | parameters | dim E-perp | activations | loss form | mu | L-BFGS + Newton iterations (HVPs) | gradients; HVPs | HVP (error level) | HVP / gradient time, kept point (nominal; augmented) | from scratch |\n|---|---|---:|---:|---:|---|---|---:|---|---:|---|---:|---:|"
    );
    for o in outputs {
        for run in &o.runs {
            let r = &run.report;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} + {} ({}): {} | {}; {} | {} ({}) | {}; {} | {} |",
                o.experiment,
                o.profile,
                o.samples,
                o.params,
                r.dim_perp,
                o.activations.join(", "),
                r.loss_form.as_deref().unwrap_or("-"),
                if r.weight_decay == 0.0 {
                    "0".into()
                } else {
                    sci(r.weight_decay)
                },
                r.iterations,
                r.newton_iterations,
                r.newton_hvps,
                r.stop_reason,
                r.gradient_evaluations,
                r.hvp_count,
                r.hvp.name(),
                sci(r.hvp_error),
                o.hvp_cost_in_gradients
                    .map_or("-".into(), |c| format!("{c:.2}")),
                o.hvp_cost_augmented
                    .map_or("-".into(), |c| format!("{c:.2}")),
                o.hvp_cost_from_scratch
                    .map_or("-".into(), |(a, b)| format!("{a:.2}; {b:.2}"))
            );
        }
    }
}

/// The paragraph that states what was found, with the numbers.
pub fn paragraph(outputs: &[StabilityOutput]) -> String {
    let mut parts = Vec::new();
    for o in outputs {
        for run in &o.runs {
            let r = &run.report;
            let mut t = format!(
                "{} (run {}{}): residual {} ({} of its start) after {} L-BFGS and {} Newton iterations, lambda on E in [{}, {}], lambda of H_perp in [{}, {}]{}",
                o.experiment,
                run.run,
                if r.weight_decay == 0.0 {
                    String::new()
                } else {
                    format!(", ridge mu = {}", sci(r.weight_decay))
                },
                sci(r.residual),
                sci(r.residual / r.residual_start.max(f64::MIN_POSITIVE)),
                r.iterations,
                r.newton_iterations,
                sci(r.e_block.min),
                sci(r.e_block.max),
                sci(r.perp_block.min),
                sci(r.perp_block.max),
                if r.perp_exact { "" } else { " (estimate)" }
            );
            match r.verdict {
                Verdict::NotStationary => t.push_str(": not stationary within the budget, so no verdict"),
                Verdict::Stable => t.push_str(": stable for augmented training"),
                Verdict::EstimateOnly => t.push_str(&format!(
                    ": a minimum within E whose sampled estimate of H_perp has negative eigenvalues, but the lowest Ritz vector's held-out Rayleigh quotient{} is not significantly below zero (the sample's own lambda_min is biased downwards: it is a minimum over the sampling noise), so no verdict",
                    r.held_out_rayleigh.as_ref().map_or(String::new(), |q| format!(" {} +- {}", sci(q.mean), sci(q.standard_error)))
                )),
                Verdict::UnstableOffESampled => t.push_str(&format!(
                    ": a minimum within E, and a saddle of the exact R_aug: the Ritz vector of the estimate's lambda_min has Rayleigh quotient {} +- {} (mean +- standard error over {} held-out samples of M = {} elements, each unbiased for the exact group average), so lambda_min(H_perp) is at most about that",
                    sci(r.held_out_rayleigh.as_ref().map_or(f64::NAN, |q| q.mean)),
                    sci(r.held_out_rayleigh.as_ref().map_or(f64::NAN, |q| q.standard_error)),
                    r.held_out_rayleigh.as_ref().map_or(0, |q| q.values.len()),
                    r.perp_elements
                )),
                Verdict::Unresolved => t.push_str(
                    ": stationary, but the lowest Ritz value of a deciding block has not converged (its residual exceeds a tenth of it; Lanczos bounds lambda_min only from above), so no verdict",
                ),
                Verdict::Flat => t.push_str(
                    ": H_perp is the ridge alone (the loss gives the group layers no curvature: a saturated or collapsed network), so no verdict",
                ),
                Verdict::UnstableOffE => t.push_str(&format!(
                    ": a minimum within E but a saddle of R_aug ({} negative eigenvalue(s) of H_perp beyond the noise level {})",
                    r.perp_block.negative_beyond_noise,
                    sci(r.perp_block.noise)
                )),
                Verdict::UnstableInE => t.push_str(&format!(
                    ": not a minimum even within E (lambda_min on E {} below -{})",
                    sci(r.e_block.min),
                    sci(r.e_block.noise)
                )),
            }
            if let Some(e) = &r.escape_min {
                t.push_str(&format!(
                    "; escape along the Ritz vector: measured factor {:.9} per step against predicted {:.9}",
                    e.measured_factor,
                    e.predicted_factor.unwrap_or(f64::NAN)
                ));
            }
            if let Some(k) = r.kink_distance {
                if k < 1e-4 * r.norm_a_star.max(1.0) {
                    t.push_str(&format!(
                        " (a LeakyReLU input lies {} from its kink: the Hessian there is not well defined)",
                        sci(k)
                    ));
                }
            }
            parts.push(t);
        }
    }
    if parts.is_empty() {
        return "No stability analysis found.".into();
    }
    format!("Found: {}.", parts.join("; "))
}

fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The SLQ densities, one panel per analysed experiment (first run), eigenvalues scaled by
/// the experiment's max |lambda|, log-scaled density.
pub fn figure(outputs: &[StabilityOutput]) -> Result<String, super::figure::FigureError> {
    figure_svg(outputs).map_err(|m| super::figure::FigureError::new(STABILITY_SVG, m))
}

fn figure_svg(outputs: &[StabilityOutput]) -> Result<String, String> {
    let panels: Vec<(&StabilityOutput, &StabilityReport)> = outputs
        .iter()
        .filter_map(|o| o.runs.first().map(|r| (o, &r.report)))
        .collect();
    let cols = 3usize;
    let rows = panels.len().div_ceil(cols).max(1);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1200, 60 + 300 * rows as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let body = root
            .titled(
                "SLQ spectral densities: Hess R_eqv on E (green), H_perp on E-perp (blue)",
                ("sans-serif", 20),
            )
            .map_err(de)?;
        let areas = body.split_evenly((rows, cols));
        let grid: Vec<f64> = (0..=400).map(|i| -1.05 + 2.1 * i as f64 / 400.0).collect();
        for ((o, r), area) in panels.iter().zip(areas.iter()) {
            let scale = [
                r.e_block.min,
                r.e_block.max,
                r.perp_block.min,
                r.perp_block.max,
            ]
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
            let sigma = 0.01;
            let dens = |d: &eqaug_dynamics::lanczos::SpectralDensity| {
                let scaled = eqaug_dynamics::lanczos::SpectralDensity {
                    nodes: d
                        .nodes
                        .iter()
                        .map(|n| n.iter().map(|x| x / scale).collect())
                        .collect(),
                    weights: d.weights.clone(),
                };
                scaled.evaluate(&grid, sigma)
            };
            let de_ = dens(&r.e_block.density);
            let dp = dens(&r.perp_block.density);
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{} (max|lambda| = {})", o.experiment, sci(scale)),
                    ("sans-serif", 15),
                )
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(-1.05f64..1.05f64, (1e-4f64..1e3f64).log_scale())
                .map_err(de)?;
            chart
                .configure_mesh()
                .x_desc("lambda / max|lambda|")
                .y_desc("density")
                .x_labels(5)
                .y_labels(5)
                .label_style(("sans-serif", 11))
                .axis_desc_style(("sans-serif", 12))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(de)?;
            for (d, color) in [(&de_, RGBColor(0, 140, 60)), (&dp, RGBColor(30, 90, 220))] {
                let pts: Vec<(f64, f64)> = grid
                    .iter()
                    .zip(d.iter())
                    .map(|(&x, &y)| (x, y.clamp(1e-4, 1e3)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(de)?;
            }
        }
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// Writes `out/stability.md` and `out/stability.svg` from the analyses under `dir`, returning
/// the claims (empty when `dir` holds none).
pub fn write(
    dir: &Path,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<Claim>, ReportError> {
    let outputs = load(dir)?;
    if outputs.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out).map_err(|source| ReportError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let fig_path = out.join(STABILITY_SVG);
    let svg = figure(&outputs).map_err(|e| e.at(fig_path.clone()))?;
    write_file(&fig_path, &svg, written)?;
    write_file(
        &out.join(STABILITY_MD),
        &markdown(&outputs, Some(STABILITY_SVG)),
        written,
    )?;
    Ok(claims(&outputs))
}
