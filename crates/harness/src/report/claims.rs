//! The claims of docs/science.md §5, each a measured number checked against an explicit bound.
//!
//! All claim definitions live in [`CLAIMS`] (on an experiment's runs) and
//! [`WORKED_EXAMPLE_CLAIMS`] (on the worked example): adding a claim is adding one entry there.
//! Measurements are paired per run (all strategies of a run share A0 and data) and then
//! summarised by the median over the runs that reached the experiment's last epoch; a run
//! whose strategy diverged earlier does not count.

use super::aggregate::quantile;
use super::input::Experiment;
use super::table::sci;
use crate::config::Precision;
use eqaug_dynamics::worked_example::WorkedExample;
use eqaug_dynamics::Sampling;
use eqaug_dynamics::StrategyKind::{Augmented, Equivariant, Nominal};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt::{self, Write as _};

/// The number written for a measurement that is infinite or could not be made (JSON has no
/// infinity); such a claim always fails.
pub const NOT_MEASURABLE: f64 = 1e308;

/// One checked claim, as written to `claims.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Claim id, e.g. `eqv-in-E`.
    pub id: String,
    /// Experiment id (`e1`, `e4-rot`, ...).
    pub experiment: String,
    /// What is claimed and how it is measured, in words.
    pub statement: String,
    /// The measured number (always finite: see [`NOT_MEASURABLE`]).
    #[serde(serialize_with = "finite")]
    pub measured: f64,
    /// The bound, e.g. `<= 1e-5` or `within [0.5, 2]`.
    pub bound: String,
    /// Whether `measured` satisfies `bound` (false when there is no data).
    pub pass: bool,
    /// No run could be measured (every run lacks the strategies, or they failed): neither
    /// PASS nor a measured FAIL, shown as "no data".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_data: bool,
    /// How many runs the number comes from, or why it could not be measured (claims.md
    /// only, not written to claims.json).
    #[serde(skip)]
    pub note: Option<String>,
}

impl Claim {
    /// The measured value as the tables print it (`-` without data).
    pub fn measured_text(&self) -> String {
        if self.no_data {
            "-".into()
        } else {
            sci(self.measured)
        }
    }

    /// A measured claim: `pass` when `bound` holds for `measured`; a non-finite measurement is
    /// recorded as [`NOT_MEASURABLE`] (and fails).
    pub fn measured(
        id: &str,
        experiment: &str,
        statement: String,
        measured: f64,
        bound: Bound,
        note: Option<String>,
    ) -> Claim {
        Claim {
            id: id.into(),
            experiment: experiment.into(),
            statement,
            measured: if measured.is_finite() {
                measured
            } else {
                NOT_MEASURABLE
            },
            bound: bound.to_string(),
            pass: bound.holds(measured),
            no_data: false,
            note,
        }
    }
}

fn finite<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(to_finite(*x))
}

/// Maps NaN and +inf to [`NOT_MEASURABLE`], -inf to its negative.
fn to_finite(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        NOT_MEASURABLE
    } else if x == f64::NEG_INFINITY {
        -NOT_MEASURABLE
    } else {
        x
    }
}

/// An explicit numeric bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// measured <= value.
    AtMost(f64),
    /// measured >= value.
    AtLeast(f64),
    /// lo <= measured <= hi.
    Within(f64, f64),
    /// |measured - centre| <= tolerance: `Near(centre, tolerance)`.
    Near(f64, f64),
}

impl Bound {
    /// Whether `x` satisfies the bound (never for NaN).
    pub fn holds(&self, x: f64) -> bool {
        match *self {
            Bound::AtMost(b) => x <= b,
            Bound::AtLeast(b) => x >= b,
            Bound::Within(lo, hi) => lo <= x && x <= hi,
            Bound::Near(c, tol) => (x - c).abs() <= tol,
        }
    }
}

fn short(x: f64) -> String {
    if x == 0.0 || (1e-3..1e4).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bound::AtMost(b) => write!(f, "<= {}", short(b)),
            Bound::AtLeast(b) => write!(f, ">= {}", short(b)),
            Bound::Within(lo, hi) => write!(f, "within [{}, {}]", short(lo), short(hi)),
            Bound::Near(c, tol) => write!(f, "{} +- {}", short(c), short(tol)),
        }
    }
}

/// A measured number with a remark on where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The number (NaN or inf if it could not be measured).
    pub value: f64,
    /// E.g. "median over 3 of 3 runs at epoch 50".
    pub note: String,
}

/// The definition of a claim on an input `I` (an experiment's runs, or the worked example):
/// applicable to an input iff `measure` returns `Some`.
#[derive(Debug)]
pub struct ClaimDef<I: 'static = Experiment> {
    /// Claim id.
    pub id: &'static str,
    /// What is claimed, in words.
    pub statement: &'static str,
    /// The bound for an input (it may depend on, e.g., an experiment's precision).
    pub bound: fn(&I) -> Bound,
    /// The measurement, or `None` if the input lacks what it needs.
    pub measure: fn(&I) -> Option<Measurement>,
}

/// Round-off bound on ||A_Eperp|| / ||A - A0|| for a strategy's precision.
fn round_off_bound(precision: Precision) -> Bound {
    if precision == Precision::F64 {
        Bound::AtMost(1e-12)
    } else {
        Bound::AtMost(1e-5)
    }
}

/// Every claim the report checks (docs/science.md §5, claims 1 to 3; claims 4 and 5 come from
/// E5 and the worked example, measured elsewhere and merged from `worked_example.json`).
pub const CLAIMS: &[ClaimDef] = &[
    ClaimDef {
        id: "eqv-in-E",
        statement: "Equivariant training stays in E to round-off: ||A_Eperp|| / ||A - A0|| of \
                    the equivariant strategy at the last epoch (median over runs; docs/science.md §5, claim 1).",
        bound: |exp| {
            round_off_bound(
                exp.main_strategy(Equivariant)
                    .map_or(Precision::F32, |s| exp.precision_of(s)),
            )
        },
        measure: |exp| Some(relative_distance_to_e(exp, exp.main_strategy(Equivariant)?)),
    },
    ClaimDef {
        id: "aug-drift-below-nominal",
        statement: "Augmented training, started in E, drifts off E far less than nominal \
                    training at a similar distance from the start: ||A_Eperp|| of augmented / \
                    ||A_Eperp|| of nominal, both read off their curves (linear interpolation \
                    over epochs) at the same distance from the start, the smaller of the two \
                    final ||A - A0|| (per run, median over runs; docs/science.md §5, claim 2).",
        bound: |_| Bound::AtMost(0.5),
        measure: |exp| {
            let aug = exp.main_strategy(Augmented)?;
            let nom = exp.main_strategy(Nominal)?;
            Some(drift_at_equal_distance(exp, aug, nom))
        },
    },
    ClaimDef {
        id: "per-sample-drift-below-nominal",
        statement: "Augmented training with one group element drawn per sample (not per \
                    mini-batch) also drifts off E far less than nominal training: as \
                    `aug-drift-below-nominal`, for the per-sample strategy (per run, median over \
                    runs; same bound as claim 2 of docs/science.md §5: the batch-level argument keeps E invariant in \
                    expectation for per-sample draws too).",
        bound: |_| Bound::AtMost(0.5),
        measure: |exp| {
            let aug = exp.augmented_with_sampling(Sampling::PerSample)?;
            let nom = exp.main_strategy(Nominal)?;
            // An experiment whose main augmented strategy is the per-sample one has it
            // measured by `aug-drift-below-nominal` already.
            if exp.main_strategy(Augmented) == Some(aug) {
                return None;
            }
            Some(drift_at_equal_distance(exp, aug, nom))
        },
    },
    ClaimDef {
        id: "exact-aug-in-E",
        statement: "With the exact full-orbit average, augmented training stays in E \
                    (Corollary 1): ||A_Eperp|| / ||A - A0|| of the exact-average strategy in \
                    f32 at the last epoch (median over runs). Its residual is the f32 round-off \
                    of the gradient, an average of |G| passes whose terms cancel, so the bound is \
                    looser than for the projected equivariant step (docs/science.md §5, claim 2).",
        bound: |_| Bound::AtMost(1e-3),
        measure: |exp| Some(relative_distance_to_e(exp, exp.exact_in(Precision::F32)?)),
    },
    ClaimDef {
        id: "exact-aug-in-E-f64",
        statement: "In f64 the exact-average residual falls to f64 round-off: \
                    ||A_Eperp|| / ||A - A0|| of the exact-average strategy in f64 at the last \
                    epoch (median over runs; docs/science.md §5, claim 2).",
        bound: |_| round_off_bound(Precision::F64),
        measure: |exp| Some(relative_distance_to_e(exp, exp.exact_in(Precision::F64)?)),
    },
    ClaimDef {
        id: "loss-eqv-aug-agree",
        statement: "The augmented and equivariant loss curves agree closely, the nominal one \
                    differs: max over epochs of |loss_aug - loss_eqv| / max over epochs of \
                    |loss_nom - loss_eqv| (per run, median over runs; docs/science.md §5, claim 3).",
        bound: |_| Bound::AtMost(0.5),
        measure: |exp| {
            let aug = exp.main_strategy(Augmented)?;
            let nom = exp.main_strategy(Nominal)?;
            let eqv = exp.main_strategy(Equivariant)?;
            Some(loss_gap_ratio(exp, aug, nom, eqv))
        },
    },
];

/// num / den, with 0/0 = 0 and x/0 = inf for x > 0.
pub(crate) fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 && num == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Median of per-run values, counting +inf as a (failing) large value and ignoring NaN.
fn claim_median(values: &[f64]) -> f64 {
    let v: Vec<f64> = values.iter().map(|&x| to_finite(x)).collect();
    let v: Vec<f64> = v
        .into_iter()
        .zip(values)
        .filter(|(_, orig)| !orig.is_nan())
        .map(|(x, _)| x)
        .collect();
    quantile(&v, 0.5).unwrap_or(f64::NAN)
}

/// The median of per-run values (NaN: that run could not be measured) out of `total` runs,
/// or "no data" when no run could be.
pub(crate) fn summarise_runs(values: Vec<f64>, total: usize, what: &str) -> Measurement {
    let used = values.iter().filter(|x| !x.is_nan()).count();
    if used == 0 {
        Measurement {
            value: f64::NAN,
            note: format!(
                "no data: no run of {total} {what} with these strategies finished (failed \
                 strategies are left out)"
            ),
        }
    } else {
        Measurement {
            value: claim_median(&values),
            note: format!("median over {used} of {} {what}", super::runs_text(total)),
        }
    }
}

/// A per-run quantity of the given strategies' metrics at the experiment's last epoch.
fn paired_at_last(
    exp: &Experiment,
    strategies: &[&str],
    f: impl Fn(&[super::input::EpochMetrics]) -> f64,
) -> Measurement {
    let last = exp.last_epoch();
    let values: Vec<f64> = exp
        .runs
        .iter()
        .filter(|run| strategies.iter().all(|s| !run.failed(s)))
        .filter_map(|run| {
            let m: Option<Vec<_>> = strategies
                .iter()
                .map(|s| run.at(s, last).copied())
                .collect();
            m.map(|m| f(&m))
        })
        .collect();
    summarise_runs(values, exp.runs.len(), &format!("reaching epoch {last}"))
}

/// `||A_Eperp|| / ||A - A0||` of a strategy at the last epoch (per run, median over runs).
pub(crate) fn relative_distance_to_e(exp: &Experiment, strategy: &str) -> Measurement {
    paired_at_last(exp, &[strategy], |m| {
        ratio(m[0].dist_to_e, m[0].dist_from_start)
    })
}

/// `||A_Eperp||` of a strategy's curve where its `||A - A0||` first reaches `d` (linear
/// interpolation between epochs); `None` if it never does.
pub fn dist_to_e_at(rows: &[super::input::EpochMetrics], d: f64) -> Option<f64> {
    if d <= 0.0 {
        return rows.first().map(|r| r.dist_to_e);
    }
    rows.windows(2).find_map(|w| {
        let (a, b) = (&w[0], &w[1]);
        (a.dist_from_start <= d && d <= b.dist_from_start).then(|| {
            let span = b.dist_from_start - a.dist_from_start;
            let t = if span > 0.0 {
                (d - a.dist_from_start) / span
            } else {
                1.0
            };
            a.dist_to_e + t * (b.dist_to_e - a.dist_to_e)
        })
    })
}

fn drift_at_equal_distance(exp: &Experiment, aug: &str, nom: &str) -> Measurement {
    let last = exp.last_epoch();
    let values: Vec<f64> = exp
        .runs
        .iter()
        .filter(|run| {
            [aug, nom]
                .iter()
                .all(|s| !run.failed(s) && run.at(s, last).is_some())
        })
        .filter_map(|run| {
            let (ra, rn) = (&run.metrics[aug], &run.metrics[nom]);
            let d = ra.last()?.dist_from_start.min(rn.last()?.dist_from_start);
            Some(ratio(dist_to_e_at(ra, d)?, dist_to_e_at(rn, d)?))
        })
        .collect();
    summarise_runs(values, exp.runs.len(), &format!("reaching epoch {last}"))
}

fn loss_gap_ratio(exp: &Experiment, aug: &str, nom: &str, eqv: &str) -> Measurement {
    let last = exp.last_epoch();
    let values: Vec<f64> = exp
        .runs
        .iter()
        .filter(|run| {
            [aug, nom, eqv]
                .iter()
                .all(|s| !run.failed(s) && run.at(s, last).is_some())
        })
        .map(|run| {
            let (mut gap_aug, mut gap_nom) = (0.0f64, 0.0f64);
            for e in &run.metrics[eqv] {
                let (Some(a), Some(n)) = (run.at(aug, e.epoch), run.at(nom, e.epoch)) else {
                    continue;
                };
                gap_aug = gap_aug.max((a.loss - e.loss).abs());
                gap_nom = gap_nom.max((n.loss - e.loss).abs());
            }
            ratio(gap_aug, gap_nom)
        })
        .collect();
    summarise_runs(values, exp.runs.len(), &format!("reaching epoch {last}"))
}

/// Checks every applicable claim of `defs` on `input`, as claims of `experiment`.
pub fn check_claims<I>(defs: &[ClaimDef<I>], input: &I, experiment: &str) -> Vec<Claim> {
    defs.iter()
        .filter_map(|def| {
            let m = (def.measure)(input)?;
            let bound = (def.bound)(input);
            let no_data = m.value.is_nan() && m.note.starts_with("no data");
            Some(Claim {
                id: def.id.to_string(),
                experiment: experiment.to_string(),
                statement: def.statement.to_string(),
                measured: to_finite(m.value),
                bound: bound.to_string(),
                pass: !no_data && bound.holds(m.value),
                no_data,
                note: Some(m.note),
            })
        })
        .collect()
}

/// Checks every applicable claim of [`CLAIMS`] on an experiment.
pub fn check(exp: &Experiment) -> Vec<Claim> {
    check_claims(CLAIMS, exp, &exp.id)
}

/// A measurement of the worked example (an exact computation, not a median over runs).
fn worked(value: f64) -> Option<Measurement> {
    Some(Measurement {
        value,
        note: "computed by `eqaug worked-example` (docs/science.md §1.4)".into(),
    })
}

/// The claims of the worked example of docs/science.md §1.4 (claim 5), measured by
/// [`eqaug_dynamics::worked_example::run`] and checked as experiment `worked-example`.
pub const WORKED_EXAMPLE_CLAIMS: &[ClaimDef<WorkedExample>] = &[
    ClaimDef {
        id: "worked-example-stationary",
        statement: "the augmented gradient vanishes at a* = 0 (max |component|)",
        bound: |_| Bound::AtMost(1e-12),
        measure: |w| worked(w.grad_aug_at_zero[0].abs().max(w.grad_aug_at_zero[1].abs())),
    },
    ClaimDef {
        id: "worked-example-hessian-e",
        statement: "Hess R_aug(0) eigenvalue along E is 1/4",
        bound: |_| Bound::Near(0.25, 1e-6),
        measure: |w| worked(w.eigenvalue_e),
    },
    ClaimDef {
        id: "worked-example-hessian-perp",
        statement: "Hess R_aug(0) eigenvalue along E-perp is (ln 2 - 1)/4 < 0: a* is a saddle of \
                    R_aug",
        bound: |_| Bound::Near((std::f64::consts::LN_2 - 1.0) / 4.0, 1e-6),
        measure: |w| worked(w.eigenvalue_perp),
    },
    ClaimDef {
        id: "worked-example-escape",
        statement: "augmented gradient flow from 1e-6 (1,-1) escapes E to (0.6209, -0.6209) \
                    (max deviation)",
        bound: |_| Bound::AtMost(1e-3),
        measure: |w| {
            worked(
                (w.escape_point[0] - 0.6209)
                    .abs()
                    .max((w.escape_point[1] + 0.6209).abs()),
            )
        },
    },
    ClaimDef {
        id: "worked-example-risk-drop",
        statement: "R_aug falls from 0.426966 to 0.412976 along the escape (value at the end)",
        bound: |_| Bound::Near(0.412976, 1e-6),
        measure: |w| worked(w.r_aug_end),
    },
];

/// The worked example's claims (see [`WORKED_EXAMPLE_CLAIMS`]).
pub fn worked_example_claims(w: &WorkedExample) -> Vec<Claim> {
    check_claims(WORKED_EXAMPLE_CLAIMS, w, "worked-example")
}

/// Renders `claims.md`: a PASS/FAIL table with the measured numbers and bounds.
pub fn claims_markdown(claims: &[Claim]) -> String {
    let passed = claims.iter().filter(|c| c.pass).count();
    let no_data = claims.iter().filter(|c| c.no_data).count();
    let mut out = String::from("# Claims\n\n");
    let _ = writeln!(
        out,
        "{passed} of {} claims pass ({} fail{}). Each claim is a measured number checked \
         against an explicit bound; see the statement for how it is measured.\n",
        claims.len(),
        claims.len() - passed - no_data,
        if no_data > 0 {
            format!(", {no_data} without data")
        } else {
            String::new()
        }
    );
    out.push_str("| result | experiment | claim | measured | bound | statement |\n");
    out.push_str("|---|---|---|---:|---|---|\n");
    for c in claims {
        let note = c
            .note
            .as_deref()
            .map(|n| format!(" _({n})_"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | `{}` | {} | {} | {}{} |",
            if c.pass {
                "PASS"
            } else if c.no_data {
                "no data"
            } else {
                "**FAIL**"
            },
            c.experiment,
            c.id,
            c.measured_text(),
            c.bound,
            c.statement.replace('|', "\\|"),
            note.replace('|', "\\|"),
        );
    }
    out
}
