//! The claims of docs/science.md §5, each a measured number checked against an explicit bound.
//!
//! All claim definitions live in [`CLAIMS`] (on an experiment's runs) and
//! [`WORKED_EXAMPLE_CLAIMS`] (on the worked example): adding a claim is adding one entry there.
//! Measurements are paired per run (all strategies of a run share A0 and data) and then
//! summarised by the median over the runs that reached the experiment's last epoch; a run
//! whose strategy diverged earlier does not count.

use super::aggregate::quantile;
use super::input::Experiment;
use super::interval::{Evidence, Method, MIN_RUNS, RUNS_FOR_95};
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
    /// Whether the claim passes: `measured` and the unfavourable end of its interval satisfy
    /// `bound` (false when there is no data or too few runs).
    pub pass: bool,
    /// PASS, FAIL, too few runs for an interval, or no data.
    #[serde(default)]
    pub status: Status,
    /// No run could be measured (every run lacks the strategies, or they failed): neither
    /// PASS nor a measured FAIL, shown as "no data".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_data: bool,
    /// How many runs (or computations) the number rests on.
    #[serde(default = "one")]
    pub n: usize,
    /// How the number was obtained (a median with an order-statistic interval, an exact
    /// computation, ...; see [`Method`]).
    #[serde(default = "exact_method")]
    pub method: Method,
    /// The interval over runs, `[lo, hi]` (absent for exact computations, extremes over runs,
    /// and too few runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// The interval's coverage: the probability that it contains the true median (a lower
    /// bound for extremes of medians).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// How many runs the number comes from, or why it could not be measured (claims.md
    /// only, not written to claims.json).
    #[serde(skip)]
    pub note: Option<String>,
}

fn one() -> usize {
    1
}

fn exact_method() -> Method {
    Method::Exact
}

/// A claim's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The number and the unfavourable end of its interval satisfy the bound.
    #[default]
    Pass,
    /// Measured, and the number or the unfavourable end of its interval violates the bound.
    Fail,
    /// Fewer runs than an interval needs ([`MIN_RUNS`]): neither PASS nor FAIL.
    TooFewRuns,
    /// Nothing could be measured.
    NoData,
}

impl Status {
    /// As claims.md shows it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "**FAIL**",
            Status::TooFewRuns => "too few runs",
            Status::NoData => "no data",
        }
    }

    /// The outcome of a number `value` with `evidence` against `bound`.
    pub fn decide(bound: Bound, value: f64, evidence: &Evidence, no_data: bool) -> Status {
        if no_data || value.is_nan() && evidence.n == 0 {
            Status::NoData
        } else if evidence.too_few_runs() {
            Status::TooFewRuns
        } else {
            let ends = evidence
                .interval
                .is_none_or(|(lo, hi)| bound.holds_interval(lo, hi));
            if ends && bound.holds(value) {
                Status::Pass
            } else {
                Status::Fail
            }
        }
    }
}

impl Claim {
    /// Sets `status`, `pass`, `n`, `method`, `interval` and `coverage` from `evidence`.
    pub fn with_evidence(mut self, bound: Bound, evidence: Evidence) -> Claim {
        self.status = Status::decide(bound, self.measured, &evidence, self.no_data);
        self.pass = self.status == Status::Pass;
        self.no_data = self.status == Status::NoData;
        self.n = evidence.n;
        self.method = evidence.method;
        self.interval = evidence
            .interval
            .map(|(lo, hi)| [to_finite(lo), to_finite(hi)]);
        self.coverage = evidence.coverage;
        self
    }

    /// A claim read from a file written before claims carried a status: its status from
    /// `pass` and `no_data`.
    pub fn normalise_status(&mut self) {
        self.status = if self.no_data {
            Status::NoData
        } else if self.pass {
            Status::Pass
        } else if self.status == Status::TooFewRuns {
            Status::TooFewRuns
        } else {
            Status::Fail
        };
    }

    /// ">= " before a coverage that is a lower bound (the Bonferroni bound of an extreme of
    /// medians), else nothing.
    pub fn coverage_prefix(&self) -> &'static str {
        if self.method == Method::ExtremeOfMedians {
            ">= "
        } else {
            ""
        }
    }

    /// How sure the number is, in words: its runs and interval (claims.md, report.md).
    pub fn evidence_text(&self) -> String {
        match self.method {
            Method::Exact => "exact/deterministic, 1 computation".into(),
            Method::ExtremeOverRuns => format!(
                "extreme over all {} (no interval)",
                super::runs_text(self.n)
            ),
            Method::MedianOrderStatistic | Method::ExtremeOfMedians => {
                match (self.interval, self.coverage) {
                    (Some([lo, hi]), Some(c)) => format!(
                        "[{}, {}] ({}{}% coverage, {}{})",
                        sci(lo),
                        sci(hi),
                        self.coverage_prefix(),
                        percent(c),
                        if self.method == Method::ExtremeOfMedians {
                            "fewest "
                        } else {
                            ""
                        },
                        super::runs_text(self.n)
                    ),
                    _ if self.no_data => "-".into(),
                    _ => format!("too few runs ({}; an interval needs {MIN_RUNS})", self.n),
                }
            }
        }
    }

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
        evidence: Evidence,
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
            pass: false,
            status: Status::Fail,
            no_data: false,
            n: 1,
            method: Method::Exact,
            interval: None,
            coverage: None,
            note,
        }
        .with_evidence(bound, evidence)
    }
}

/// A coverage as a percentage with as many digits as it needs (75, 93.75, 97.85).
pub fn percent(c: f64) -> String {
    let p = 100.0 * c;
    let s = format!("{p:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
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

    /// Whether the unfavourable end of the interval `[lo, hi]` satisfies the bound: the upper
    /// end for `<=`, the lower end for `>=`, both ends for a two-sided bound.
    pub fn holds_interval(&self, lo: f64, hi: f64) -> bool {
        match *self {
            Bound::AtMost(_) => self.holds(hi),
            Bound::AtLeast(_) => self.holds(lo),
            Bound::Within(..) | Bound::Near(..) => self.holds(lo) && self.holds(hi),
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
    /// The runs it rests on and its interval.
    pub evidence: Evidence,
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
            evidence: Evidence::median_of(&[]),
        }
    } else {
        Measurement {
            value: claim_median(&values),
            note: format!("median over {used} of {} {what}", super::runs_text(total)),
            evidence: Evidence::median_of(&values),
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
            Some(
                Claim {
                    id: def.id.to_string(),
                    experiment: experiment.to_string(),
                    statement: def.statement.to_string(),
                    measured: to_finite(m.value),
                    bound: bound.to_string(),
                    pass: false,
                    status: Status::Fail,
                    no_data,
                    n: 0,
                    method: Method::Exact,
                    interval: None,
                    coverage: None,
                    note: Some(m.note),
                }
                .with_evidence(bound, m.evidence),
            )
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
        evidence: Evidence::EXACT,
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

/// The paragraph of claims.md (and docs) on how sure each claim is: the interval method, its
/// coverage per run count and the PASS rule.
pub fn method_paragraph() -> String {
    format!(
        "How sure each claim is (docs/science.md §5): a claim measured per run and summarised by \
         the median over runs comes with the number of runs n and the distribution-free \
         order-statistic (binomial) interval of the median over those runs: [x_(k), \
         x_(n+1-k)] of the sorted per-run values, which covers the true median with probability \
         1 - 2 P(Bin(n, 1/2) <= k - 1) whatever their distribution. k is the largest order \
         statistic reaching 95% coverage, which takes at least {RUNS_FOR_95} runs; with 3 to 5 \
         runs the interval is [min, max] with coverage 1 - 2 x 0.5^n (75%, 87.5%, 93.75%), as \
         stated per row; with fewer than {MIN_RUNS} runs there is no interval and the claim is \
         \"too few runs\" (neither PASS nor FAIL). A claim passes when the median and the \
         unfavourable end of its interval (the upper end for <=, the lower end for >=, both for \
         a two-sided bound) satisfy the bound: the true median lies beyond that end with \
         probability at most (1 - coverage) / 2. The largest of several medians joins their \
         intervals ([max of the lower ends, max of the upper ends]) with the Bonferroni lower \
         bound 1 - sum (1 - c_i) on its coverage. Exact computations (the worked example, a \
         seeded analysis of one run) and extremes over every run (a check each run must pass, \
         or an existence) have no interval and say so."
    )
}

/// "3 of 4 pass, 1 with too few runs" (the statuses that occur besides PASS).
pub fn status_counts(claims: &[Claim]) -> String {
    let count = |st: Status| claims.iter().filter(|c| c.status == st).count();
    let mut s = format!("{} of {} pass", count(Status::Pass), claims.len());
    for (st, what) in [
        (Status::Fail, "fail"),
        (Status::TooFewRuns, "with too few runs"),
        (Status::NoData, "without data"),
    ] {
        if count(st) > 0 {
            s.push_str(&format!(", {} {what}", count(st)));
        }
    }
    s
}

/// Renders `claims.md`: a PASS/FAIL table with the measured numbers, their runs and intervals,
/// and the bounds.
pub fn claims_markdown(claims: &[Claim]) -> String {
    let count = |st: Status| claims.iter().filter(|c| c.status == st).count();
    let mut out = String::from("# Claims\n\n");
    let mut extra = String::new();
    if count(Status::TooFewRuns) > 0 {
        extra.push_str(&format!(
            ", {} with too few runs",
            count(Status::TooFewRuns)
        ));
    }
    if count(Status::NoData) > 0 {
        extra.push_str(&format!(", {} without data", count(Status::NoData)));
    }
    let _ = writeln!(
        out,
        "{} of {} claims pass ({} fail{extra}). Each claim is a measured number checked \
         against an explicit bound; see the statement for how it is measured.\n",
        count(Status::Pass),
        claims.len(),
        count(Status::Fail),
    );
    let _ = writeln!(out, "{}\n", method_paragraph());
    out.push_str(
        "| result | experiment | claim | measured | runs, interval (coverage) | bound | statement |\n",
    );
    out.push_str("|---|---|---|---:|---|---|---|\n");
    for c in claims {
        let note = c
            .note
            .as_deref()
            .map(|n| format!(" _({n})_"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | `{}` | {} | {} | {} | {}{} |",
            c.status.label(),
            c.experiment,
            c.id,
            c.measured_text(),
            c.evidence_text(),
            c.bound,
            c.statement.replace('|', "\\|"),
            note.replace('|', "\\|"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_rule_uses_the_unfavourable_end_of_the_interval() {
        // Three runs: [min, max] at 75% coverage.
        let e = Evidence::median_of(&[0.1, 0.2, 0.6]);
        assert_eq!(e.interval, Some((0.1, 0.6)));
        // x <= 0.5: the median 0.2 meets it, the upper end 0.6 does not.
        assert_eq!(
            Status::decide(Bound::AtMost(0.5), 0.2, &e, false),
            Status::Fail
        );
        assert_eq!(
            Status::decide(Bound::AtMost(0.7), 0.2, &e, false),
            Status::Pass
        );
        // x >= bound: the lower end decides.
        assert_eq!(
            Status::decide(Bound::AtLeast(0.15), 0.2, &e, false),
            Status::Fail
        );
        assert_eq!(
            Status::decide(Bound::AtLeast(0.1), 0.2, &e, false),
            Status::Pass
        );
        // Two-sided: both ends.
        assert_eq!(
            Status::decide(Bound::Within(0.05, 0.55), 0.2, &e, false),
            Status::Fail
        );
        assert_eq!(
            Status::decide(Bound::Near(0.35, 0.25), 0.2, &e, false),
            Status::Pass
        );
    }

    #[test]
    fn two_runs_are_too_few_and_exact_computations_need_no_interval() {
        let two = Evidence::median_of(&[0.1, 0.2]);
        assert_eq!(
            Status::decide(Bound::AtMost(0.5), 0.15, &two, false),
            Status::TooFewRuns
        );
        assert_eq!(
            Status::decide(Bound::AtMost(0.5), 0.15, &Evidence::EXACT, false),
            Status::Pass
        );
        assert_eq!(
            Status::decide(Bound::AtMost(0.1), 0.15, &Evidence::EXACT, false),
            Status::Fail
        );
        assert_eq!(
            Status::decide(Bound::AtMost(0.5), f64::NAN, &two, true),
            Status::NoData
        );
    }

    #[test]
    fn a_claim_carries_its_runs_interval_and_coverage() {
        let values = [0.3, 0.1, 0.2, 0.25, 0.15, 0.05, 0.35, 0.4, 0.45, 0.12];
        let c = Claim::measured(
            "x",
            "e1",
            "s".into(),
            0.175,
            Bound::AtMost(0.5),
            Evidence::median_of(&values),
            None,
        );
        assert_eq!(c.status, Status::Pass);
        assert!(c.pass);
        assert_eq!(c.n, 10);
        assert_eq!(c.method, Method::MedianOrderStatistic);
        // Sorted: 0.05 0.1 0.12 0.15 0.2 0.25 0.3 0.35 0.4 0.45; k = 2.
        assert_eq!(c.interval, Some([0.1, 0.4]));
        assert!((c.coverage.unwrap() - (1.0 - 22.0 / 1024.0)).abs() < 1e-12);
        assert_eq!(
            c.evidence_text(),
            "[1.00e-1, 4.00e-1] (97.85% coverage, 10 runs)"
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["status"], "pass");
        assert_eq!(json["method"], "median-order-statistic");
        assert_eq!(json["n"], 10);
        // The largest of three medians of 3 runs: a Bonferroni lower bound on the coverage.
        let parts: Vec<Evidence> = [[0.1, 0.2, 0.3], [0.2, 0.3, 0.4], [0.0, 0.1, 0.2]]
            .iter()
            .map(|v| Evidence::median_of(v))
            .collect();
        let m = Claim::measured(
            "m",
            "e1",
            "s".into(),
            0.3,
            Bound::AtMost(0.5),
            Evidence::max_of_medians(&parts),
            None,
        );
        assert_eq!(m.interval, Some([0.2, 0.4]));
        assert_eq!(
            m.evidence_text(),
            "[2.00e-1, 4.00e-1] (>= 25% coverage, fewest 3 runs)"
        );
        assert!(m.pass);
        // A claim read back from an older file without these fields keeps its outcome.
        let old: Claim = serde_json::from_str(
            r#"{"id":"a","experiment":"b","statement":"c","measured":1.0,"bound":"<= 0.5","pass":false}"#,
        )
        .unwrap();
        let mut old = old;
        old.normalise_status();
        assert_eq!(
            (old.status, old.method, old.n),
            (Status::Fail, Method::Exact, 1)
        );
    }
}
