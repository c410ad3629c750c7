//! Regularised strategies (issue 15, section 1): for an experiment whose strategies carry a
//! regulariser `gamma/2 ||A_Eperp||^2`, a log-log figure of the final ||A_Eperp|| against
//! gamma (median over runs, one point per regularised strategy) with the plain nominal and
//! augmented levels as reference lines, and the claim that a large enough gamma keeps nominal
//! training closer to E than augmented training.

use super::claims::{Bound, Claim, Status};
use super::figure::FigureError;
use super::input::Experiment;
use super::interval::{Evidence, Method};
use super::table::sci;
use eqaug_dynamics::StrategyKind;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// Median of the values (NaN if empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The measured points of a regularised experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct RegularisedSummary {
    /// The last epoch.
    pub epoch: usize,
    /// `(gamma, strategy, median final ||A_Eperp||)` of the regularised nominal strategies,
    /// by increasing gamma.
    pub points: Vec<(f64, String, f64)>,
    /// Median final ||A_Eperp|| of plain nominal training, if run.
    pub nominal: Option<f64>,
    /// `(strategy, median final ||A_Eperp||)` of plain augmented training, if run.
    pub augmented: Option<(String, f64)>,
    /// Runs that reached the last epoch.
    pub runs: usize,
}

/// The summary, or `None` if the experiment has no regularised nominal strategy.
pub fn summarise(exp: &Experiment) -> Option<RegularisedSummary> {
    let last = exp.last_epoch();
    let at_last = |s: &str| {
        median(
            exp.runs
                .iter()
                .filter_map(|r| r.at(s, last).map(|m| m.dist_to_e))
                .collect(),
        )
    };
    let mut points: Vec<(f64, String, f64)> = exp
        .meta
        .strategies
        .iter()
        .filter(|s| s.kind == StrategyKind::Nominal)
        .filter_map(|s| s.regulariser.map(|r| (r.gamma, s.name.clone())))
        .filter(|(g, _)| *g > 0.0)
        .map(|(g, name)| {
            let d = at_last(&name);
            (g, name, d)
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let plain = |kind: StrategyKind| {
        exp.meta
            .strategies
            .iter()
            .filter(|s| s.kind == kind && s.regulariser.is_none())
            .find(|s| {
                kind != StrategyKind::Augmented
                    || matches!(
                        s.sampling.unwrap_or_default(),
                        eqaug_dynamics::Sampling::PerBatch | eqaug_dynamics::Sampling::PerSample
                    )
            })
            .map(|s| s.name.clone())
    };
    let runs = exp
        .runs
        .iter()
        .filter(|r| {
            r.metrics
                .values()
                .any(|m| m.last().is_some_and(|x| x.epoch == last))
        })
        .count();
    Some(RegularisedSummary {
        epoch: last,
        nominal: plain(StrategyKind::Nominal).map(|s| at_last(&s)),
        augmented: plain(StrategyKind::Augmented).map(|s| {
            let d = at_last(&s);
            (s, d)
        }),
        points,
        runs,
    })
}

/// The claim: for the regularised strategy closest to E (smallest median final ||A_Eperp||),
/// its final ||A_Eperp|| over that of augmented training, per run (the two strategies of a run
/// share A0 and data), median over runs with its order-statistic interval, is below 1.
pub fn claims(exp: &Experiment, s: &RegularisedSummary) -> Vec<Claim> {
    let Some((aug, aug_d)) = &s.augmented else {
        return Vec::new();
    };
    let (best_gamma, best_name, best_d) = s
        .points
        .iter()
        .filter(|p| !p.2.is_nan())
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .cloned()
        .unwrap_or((f64::NAN, String::new(), f64::NAN));
    let per_run: Vec<f64> = exp
        .runs
        .iter()
        .filter(|r| !r.failed(&best_name) && !r.failed(aug))
        .filter_map(|r| {
            let b = r.at(&best_name, s.epoch)?.dist_to_e;
            let a = r.at(aug, s.epoch)?.dist_to_e;
            Some(super::claims::ratio(b, a))
        })
        .collect();
    let ratio = median(per_run.clone());
    let bound = Bound::AtMost(1.0);
    let all: Vec<String> = s
        .points
        .iter()
        .map(|(g, _, d)| format!("gamma {} -> {}", sci(*g), sci(*d)))
        .collect();
    vec![Claim {
        id: "reg-closer-than-augmented".into(),
        experiment: exp.id.clone(),
        statement: format!(
            "With gamma large enough, regularised nominal training (risk + gamma/2 \
             ||A_Eperp||^2) stays closer to E than augmented training: ||A_Eperp|| at the last \
             epoch of the regularised strategy closest to E (smallest median; `{best_name}`, \
             gamma {}) over that of `{aug}`, per run, median over runs",
            sci(best_gamma)
        ),
        measured: if ratio.is_finite() {
            ratio
        } else {
            super::claims::NOT_MEASURABLE
        },
        bound: bound.to_string(),
        pass: false,
        status: Status::Fail,
        no_data: !ratio.is_finite(),
        n: 0,
        method: Method::MedianOrderStatistic,
        interval: None,
        coverage: None,
        note: Some(format!(
            "median over {} of {} at epoch {}; medians: augmented {}, `{best_name}` {}, \
             nominal {}; {}",
            per_run.len(),
            super::runs_text(s.runs),
            s.epoch,
            sci(*aug_d),
            sci(best_d),
            s.nominal.map_or("not run".into(), sci),
            all.join(", ")
        )),
    }
    .with_evidence(bound, Evidence::median_of(&per_run))]
}

/// The log-log figure of final ||A_Eperp|| against gamma, with the nominal (dotted red) and
/// augmented (dashed blue) levels.
pub fn figure(exp: &Experiment, s: &RegularisedSummary) -> Result<String, FigureError> {
    svg(exp, s).map_err(|m| FigureError::new(crate::schema::outputs::REGULARISED_SVG, m))
}

fn svg(exp: &Experiment, s: &RegularisedSummary) -> Result<String, String> {
    let de = |e: &dyn std::fmt::Display| e.to_string();
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| p.2 > 0.0 && p.2.is_finite())
        .map(|p| (p.0, p.2))
        .collect();
    let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    ys.extend(s.nominal.iter().copied());
    ys.extend(s.augmented.iter().map(|a| a.1));
    ys.retain(|y| *y > 0.0 && y.is_finite());
    if pts.is_empty() || ys.is_empty() {
        return Err("no positive ||A_Eperp|| to plot on a log scale".into());
    }
    let (ylo, yhi) = ys.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &y| {
        (lo.min(y), hi.max(y))
    });
    let (xlo, xhi) = (pts[0].0 / 2.0, pts[pts.len() - 1].0 * 2.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| de(&e))?;
        let title = format!(
            "{}: ||A_Eperp|| at epoch {} against gamma (median over {})",
            exp.id,
            s.epoch,
            super::runs_text(s.runs)
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(84)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo / 2.0..yhi * 2.0).log_scale())
            .map_err(|e| de(&e))?;
        chart
            .configure_mesh()
            .x_desc("gamma (penalty gamma/2 ||A_Eperp||^2)")
            .y_desc("||A_Eperp|| at the last epoch")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(|e| de(&e))?;
        let green = RGBColor(0, 140, 60);
        chart
            .draw_series(LineSeries::new(pts.clone(), green.stroke_width(3)))
            .map_err(|e| de(&e))?
            .label("regularised nominal")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 30, y)], green.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, green.filled())))
            .map_err(|e| de(&e))?;
        let blue = RGBColor(30, 90, 220);
        let red = RGBColor(210, 40, 40);
        if let Some((name, a)) = &s.augmented {
            if *a > 0.0 {
                chart
                    .draw_series(std::iter::once(DashedPathElement::new(
                        vec![(xlo, *a), (xhi, *a)],
                        12,
                        7,
                        blue.stroke_width(3),
                    )))
                    .map_err(|e| de(&e))?
                    .label(format!("{name} (no penalty)"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 30, y)], blue.stroke_width(3))
                    });
            }
        }
        if let Some(n) = s.nominal.filter(|n| *n > 0.0) {
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    vec![(xlo, n), (xhi, n)],
                    3,
                    6,
                    red.stroke_width(3),
                )))
                .map_err(|e| de(&e))?
                .label("nominal (gamma = 0)")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 30, y)], red.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| de(&e))?;
        root.present().map_err(|e| de(&e))?;
    }
    Ok(svg)
}

/// The claims of the eigenvalue shift of docs/science.md §10, from
/// [`eqaug_dynamics::regularised::eigenvalue_shift_check`] (merged into the report with the
/// worked example's claims).
pub fn shift_claims(c: &eqaug_dynamics::regularised::ShiftCheck) -> Vec<Claim> {
    let perp = c.perp_relative_error();
    let e = c.e_relative_change();
    let bound = Bound::AtMost(1e-6);
    vec![
        Claim {
            id: "reg-shift-perp".into(),
            experiment: "regulariser-hessian".into(),
            statement: format!(
                "On E-perp the penalty gamma/2 ||A_Eperp||^2 adds exactly gamma to every \
                 Hessian eigenvalue: lambda_min/max of H_perp + gamma I against those of H_perp \
                 plus gamma, max relative error (gamma {}; H_perp in [{:.6}, {:.6}], with the \
                 penalty [{:.6}, {:.6}]; exact R_aug of a small C_4 net in f64, Lanczos)",
                c.gamma, c.perp.0, c.perp.1, c.perp_regularised.0, c.perp_regularised.1
            ),
            measured: perp,
            bound: bound.to_string(),
            pass: false,
            status: Status::Fail,
            no_data: !perp.is_finite(),
            n: 1,
            method: Method::Exact,
            interval: None,
            coverage: None,
            note: None,
        }
        .with_evidence(bound, Evidence::EXACT),
        Claim {
            id: "reg-shift-e".into(),
            experiment: "regulariser-hessian".into(),
            statement: format!(
                "On E the penalty leaves the Hessian unchanged: relative change of the extreme \
                 eigenvalues of Hess R_eqv (in [{:.6}, {:.6}])",
                c.e.0, c.e.1
            ),
            measured: e,
            bound: bound.to_string(),
            pass: false,
            status: Status::Fail,
            no_data: !e.is_finite(),
            n: 1,
            method: Method::Exact,
            interval: None,
            coverage: None,
            note: None,
        }
        .with_evidence(bound, Evidence::EXACT),
    ]
}
