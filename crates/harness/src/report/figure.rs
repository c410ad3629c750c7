//! SVG figures like the paper's (docs/science.md §3): ||A_Eperp|| (y) against ||A - A0|| (x), a
//! thick median line per strategy and, with up to [`BAND_MIN_RUNS`] runs, one thin translucent
//! line per run, beyond that a shaded interquartile band, in two panels.
//!
//! Drawn with plotters' SVG backend into a string (no fonts needed: text is `<text>`).

use super::aggregate::SummaryRow;
use super::input::Experiment;
use eqaug_dynamics::{Sampling, StrategyKind};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// How a median line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    /// Continuous.
    Solid,
    /// Long dashes.
    Dashed,
    /// Dots.
    Dotted,
}

/// One strategy's curves in a figure.
#[derive(Debug, Clone)]
pub struct StrategyCurves {
    /// Legend label.
    pub label: String,
    /// Line colour.
    pub color: RGBColor,
    /// Dash pattern of the median line.
    pub dash: Dash,
    /// One (||A - A0||, ||A_Eperp||) polyline per run, in epoch order.
    pub runs: Vec<Vec<(f64, f64)>>,
    /// The median over runs of both coordinates, per epoch.
    pub median: Vec<(f64, f64)>,
    /// `(x, y_q25, y_q75)` per epoch: the interquartile range over runs of y at the median x
    /// (drawn as a band instead of the per-run lines when there are more than
    /// [`BAND_MIN_RUNS`] runs).
    pub band: Vec<(f64, f64, f64)>,
}

/// Up to this many runs a figure draws every run as a thin line; with more it draws the
/// interquartile band over runs around each median instead (the lines of many runs hide the
/// medians, and three runs have no meaningful quartiles).
pub const BAND_MIN_RUNS: usize = 3;

/// Whether a figure of `runs` runs draws bands (else per-run lines).
pub fn draws_bands(runs: usize) -> bool {
    runs > BAND_MIN_RUNS
}

/// Fills the band `(x, lo, hi)` (lower edge forwards, upper edge backwards) in a translucent
/// `color`, its vertices clamped into the plotting box `[x0, x1] x [y0, y1]`.
pub(crate) fn draw_band<DB, CT>(
    area: &DrawingArea<DB, CT>,
    band: &[(f64, f64, f64)],
    color: RGBColor,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> DrawResult
where
    DB: DrawingBackend,
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
{
    let ok: Vec<(f64, f64, f64)> = band
        .iter()
        .copied()
        .filter(|(x, lo, hi)| x.is_finite() && lo.is_finite() && hi.is_finite())
        .collect();
    if ok.len() < 2 {
        return Ok(());
    }
    let clamp = |x: f64, y: f64| (x.clamp(x0, x1), y.clamp(y0, y1));
    let mut poly: Vec<(f64, f64)> = ok.iter().map(|&(x, lo, _)| clamp(x, lo)).collect();
    poly.extend(ok.iter().rev().map(|&(x, _, hi)| clamp(x, hi)));
    area.draw(&Polygon::new(poly, color.mix(0.18).filled()))
        .map_err(de)
}

const GREEN: RGBColor = RGBColor(0, 140, 60);
const BLUE: RGBColor = RGBColor(30, 90, 220);
const RED: RGBColor = RGBColor(215, 40, 40);
const PURPLE: RGBColor = RGBColor(150, 50, 170);
const X_LABEL: &str = "||A - A0||  (distance from start)";
const Y_LABEL: &str = "||A_Eperp||  (distance to E)";

/// The curves of one strategy: per-run polylines (up to the first non-finite point) and the
/// median line from the summary.
pub fn strategy_curves(
    exp: &Experiment,
    summary: &[SummaryRow],
    strategy: &str,
    label: &str,
    color: RGBColor,
    dash: Dash,
) -> StrategyCurves {
    let runs = exp
        .runs
        .iter()
        .filter_map(|r| r.metrics.get(strategy))
        .map(|rows| {
            rows.iter()
                .map(|m| (m.dist_from_start, m.dist_to_e))
                .take_while(|(x, y)| x.is_finite() && y.is_finite())
                .collect::<Vec<_>>()
        })
        .collect();
    let median = summary
        .iter()
        .filter(|r| r.strategy == strategy)
        .map(|r| (r.dist_from_start.median, r.dist_to_e.median))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let band = summary
        .iter()
        .filter(|r| r.strategy == strategy)
        .map(|r| (r.dist_from_start.median, r.dist_to_e.q25, r.dist_to_e.q75))
        .collect();
    StrategyCurves {
        label: label.to_string(),
        color,
        dash,
        runs,
        median,
        band,
    }
}

/// The three main strategies in the paper's styles (equivariant green solid, augmented blue
/// dashed, nominal red dotted), those present.
pub fn main_curves(exp: &Experiment, summary: &[SummaryRow]) -> Vec<StrategyCurves> {
    [
        (StrategyKind::Equivariant, GREEN, Dash::Solid),
        (StrategyKind::Augmented, BLUE, Dash::Dashed),
        (StrategyKind::Nominal, RED, Dash::Dotted),
    ]
    .into_iter()
    .filter_map(|(kind, color, dash)| {
        let name = exp.main_strategy(kind)?;
        Some(strategy_curves(exp, summary, name, name, color, dash))
    })
    .collect()
}

/// A figure that could not be drawn: which one and plotters' message (plotters' error types
/// are generic over the backend, so the message is kept as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{figure}: cannot draw the figure: {message}")]
pub struct FigureError {
    /// The figure's file name as the report writes it (`figure.svg`, `steps.svg`, ...).
    pub figure: String,
    /// What went wrong.
    pub message: String,
}

impl FigureError {
    /// A drawing error of `figure`.
    pub fn new(figure: &str, message: impl Into<String>) -> Self {
        FigureError {
            figure: figure.into(),
            message: message.into(),
        }
    }

    /// The report's error for this figure written to `path`.
    pub(crate) fn at(self, path: std::path::PathBuf) -> super::error::ReportError {
        super::error::ReportError::Figure {
            path,
            message: self.message,
        }
    }
}

/// Drawing result of the figure helpers: plotters' message as text, named by the public
/// figure functions (see [`FigureError`]).
pub(crate) type DrawResult<T = ()> = Result<T, String>;

/// plotters' error as text.
pub(crate) fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Tick label: `0`, or scientific with at most 2 significant digits and no trailing `.0`.
fn tick(v: f64, range: f64) -> String {
    if v.abs() <= range * 1e-9 {
        return "0".into();
    }
    let s = format!("{v:.1e}");
    match s.split_once('e') {
        Some((mant, exp)) => format!("{}e{exp}", mant.trim_end_matches(".0")),
        None => s,
    }
}

/// Upper end of an axis showing values up to `max`: a little headroom, never empty.
fn axis_max(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.05
    } else {
        1.0
    }
}

fn max_of<'a>(points: impl Iterator<Item = &'a (f64, f64)>, coord: fn(&(f64, f64)) -> f64) -> f64 {
    points
        .map(coord)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
}

fn all_points(curves: &[StrategyCurves]) -> impl Iterator<Item = &(f64, f64)> {
    curves
        .iter()
        .flat_map(|c| c.runs.iter().flatten().chain(c.median.iter()))
}

/// Clips a polyline to the box [0, x_max] x [0, y_max] (Liang-Barsky per segment), returning
/// the visible pieces. plotters does not clip series to the plotting area.
pub fn clip_polyline(points: &[(f64, f64)], x_max: f64, y_max: f64) -> Vec<Vec<(f64, f64)>> {
    let inside = |(x, y): (f64, f64)| (0.0..=x_max).contains(&x) && (0.0..=y_max).contains(&y);
    let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    if points.len() == 1 && inside(points[0]) {
        return vec![points.to_vec()];
    }
    for w in points.windows(2) {
        let (p, q) = (w[0], w[1]);
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        let mut visible = true;
        for (pk, qk) in [(-dx, p.0), (dx, x_max - p.0), (-dy, p.1), (dy, y_max - p.1)] {
            if pk == 0.0 {
                if qk < 0.0 {
                    visible = false;
                }
            } else {
                let t = qk / pk;
                if pk < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
            }
        }
        if !visible || t0 > t1 {
            if current.len() > 1 {
                pieces.push(std::mem::take(&mut current));
            }
            current.clear();
            continue;
        }
        let a = (p.0 + t0 * dx, p.1 + t0 * dy);
        let b = (p.0 + t1 * dx, p.1 + t1 * dy);
        if current.last() != Some(&a) {
            if current.len() > 1 {
                pieces.push(std::mem::take(&mut current));
            }
            current = vec![a];
        }
        current.push(b);
        if t1 < 1.0 {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if current.len() > 1 {
        pieces.push(current);
    }
    pieces
}

/// Draws a line (solid, dashed or dotted) of `width` pixels through backend or data points.
pub(crate) fn draw_line<DB, CT, P>(
    area: &DrawingArea<DB, CT>,
    points: Vec<P>,
    color: RGBColor,
    dash: Dash,
    width: u32,
) -> DrawResult
where
    DB: DrawingBackend,
    CT: plotters::coord::CoordTranslate<From = P>,
    P: Clone + 'static,
{
    let style = color.stroke_width(width);
    match dash {
        Dash::Solid => area.draw(&PathElement::new(points, style)).map_err(de),
        Dash::Dashed => area
            .draw(&DashedPathElement::new(points, 12, 7, style))
            .map_err(de),
        Dash::Dotted => area
            .draw(&DashedPathElement::new(points, 3, 6, style))
            .map_err(de),
    }
}

/// Draws a median line in its curve's style (dotted lines a little thicker).
fn draw_styled<DB, CT, P>(
    area: &DrawingArea<DB, CT>,
    points: Vec<P>,
    curve: &StrategyCurves,
) -> DrawResult
where
    DB: DrawingBackend,
    CT: plotters::coord::CoordTranslate<From = P>,
    P: Clone + 'static,
{
    let width = if curve.dash == Dash::Dotted { 4 } else { 3 };
    draw_line(area, points, curve.color, curve.dash, width)
}

/// A panel's chart builder: caption, margins and label areas shared by all figures.
pub(crate) fn panel_builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.caption(caption, ("sans-serif", 17))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(48)
        .y_label_area_size(78);
    b
}

/// One panel: axes, per-run lines, medians, in the box [0, x_max] x [0, y_max].
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    curves: &[StrategyCurves],
    x_max: f64,
    y_max: f64,
) -> DrawResult {
    let mut chart = panel_builder(area, caption)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(de)?;
    chart
        .configure_mesh()
        .x_desc(X_LABEL)
        .y_desc(Y_LABEL)
        .x_labels(7)
        .y_labels(8)
        .x_label_formatter(&|v| tick(*v, x_max))
        .y_label_formatter(&|v| tick(*v, y_max))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(de)?;
    let plot = chart.plotting_area();
    for c in curves {
        if draws_bands(c.runs.len()) {
            draw_band(plot, &c.band, c.color, (0.0, x_max), (0.0, y_max))?;
            continue;
        }
        let thin = c.color.mix(0.3).stroke_width(1);
        for run in &c.runs {
            for piece in clip_polyline(run, x_max, y_max) {
                plot.draw(&PathElement::new(piece, thin)).map_err(de)?;
            }
        }
    }
    for c in curves {
        for piece in clip_polyline(&c.median, x_max, y_max) {
            draw_styled(plot, piece, c)?;
        }
    }
    Ok(())
}

/// The legend strip: a line sample and a label per strategy, plus a note on the line kinds.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[StrategyCurves],
    runs: usize,
) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let y = h as i32 / 2;
    let font = ("sans-serif", 15).into_font();
    let note = if runs == 1 {
        "thin: the run; thick: median over runs (the same with one run)".to_string()
    } else if draws_bands(runs) {
        format!("thick: median over {runs} runs; shaded: interquartile range over runs")
    } else {
        format!("thin: each of {runs} runs; thick: median over runs")
    };
    let text_width = |t: &str| {
        area.estimate_text_size(t, &font.clone().into_text_style(area))
            .map(|(tw, _)| tw as i32)
            .unwrap_or(8 * t.len() as i32)
    };
    let (sample, gap, sep) = (48, 8, 36);
    let widths: Vec<i32> = curves
        .iter()
        .map(|c| sample + gap + text_width(&c.label) + sep)
        .collect();
    let total = widths.iter().sum::<i32>() + text_width(&note);
    let mut x = ((w as i32 - total) / 2).max(10);
    for (c, width) in curves.iter().zip(widths) {
        draw_styled(area, vec![(x, y), (x + sample, y)], c)?;
        area.draw(&Text::new(
            c.label.clone(),
            (x + sample + gap, y - 8),
            font.clone().color(&BLACK),
        ))
        .map_err(de)?;
        x += width;
    }
    area.draw(&Text::new(
        note,
        (x, y - 8),
        font.color(&RGBColor(90, 90, 90)),
    ))
    .map_err(de)
}

/// Fills the figure, draws its title and the legend strip, and returns the two panels' areas
/// (left, right).
pub(crate) fn layout<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[StrategyCurves],
    runs: usize,
) -> DrawResult<(DrawingArea<DB, Shift>, DrawingArea<DB, Shift>)> {
    root.fill(&WHITE).map_err(de)?;
    let body = root.titled(title, ("sans-serif", 20)).map_err(de)?;
    let (legend, panels) = body.split_vertically(34);
    draw_legend(&legend, curves, runs)?;
    let (left, right) = panels.split_horizontally(panels.dim_in_pixel().0 / 2);
    Ok((left, right))
}

fn figure_title(exp: &Experiment) -> String {
    let mut t = exp.id.clone();
    if let Some(title) = &exp.meta.title {
        t.push_str(": ");
        t.push_str(title);
    }
    let n = exp.runs.len();
    let runs = format!("{n} run{}", if n == 1 { "" } else { "s" });
    if let Some(p) = &exp.meta.profile {
        t.push_str(&format!("  (profile {p}, {runs})"));
    } else {
        t.push_str(&format!("  ({runs})"));
    }
    t
}

/// Size of the figures in pixels.
pub const FIGURE_SIZE: (u32, u32) = (1400, 620);

/// The main figure: left panel all three strategies, right panel the same curves with the
/// y-range zoomed to 1.5 x the maximum of the augmented median (docs/science.md §3).
pub fn main_figure(exp: &Experiment, summary: &[SummaryRow]) -> Result<String, FigureError> {
    main_svg(exp, summary).map_err(|m| FigureError::new(crate::schema::outputs::FIGURE_SVG, m))
}

fn main_svg(exp: &Experiment, summary: &[SummaryRow]) -> DrawResult<String> {
    let curves = main_curves(exp, summary);
    let x_max = axis_max(max_of(all_points(&curves), |p| p.0));
    let y_max = axis_max(max_of(all_points(&curves), |p| p.1));
    let aug_max = curves
        .iter()
        .find(|c| c.dash == Dash::Dashed)
        .map(|c| max_of(c.median.iter(), |p| p.1))
        .unwrap_or(0.0);
    let (y_zoom, zoom_caption) = if aug_max > 0.0 && aug_max.is_finite() {
        (
            1.5 * aug_max,
            "zoom on augmented: y up to 1.5 x its max median".to_string(),
        )
    } else {
        (y_max, "zoom: no augmented curve to zoom on".to_string())
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, FIGURE_SIZE).into_drawing_area();
        let (left, right) = layout(&root, &figure_title(exp), &curves, exp.runs.len())?;
        draw_panel(&left, "all strategies", &curves, x_max, y_max)?;
        draw_panel(&right, &zoom_caption, &curves, x_max, y_zoom)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// The sampling comparison (docs/science.md §7): uniform augmented (left) against the authors'
/// non-uniform `reference` sampling (right), on the same axes. `None` without a reference
/// strategy.
pub fn reference_figure(
    exp: &Experiment,
    summary: &[SummaryRow],
) -> Result<Option<String>, FigureError> {
    reference_svg(exp, summary)
        .map_err(|m| FigureError::new(crate::schema::outputs::REFERENCE_SVG, m))
}

fn reference_svg(exp: &Experiment, summary: &[SummaryRow]) -> DrawResult<Option<String>> {
    let Some(reference) = exp.augmented_with_sampling(Sampling::Reference) else {
        return Ok(None);
    };
    let mut curves = Vec::new();
    if let Some(uniform) = exp.main_strategy(StrategyKind::Augmented) {
        curves.push(strategy_curves(
            exp,
            summary,
            uniform,
            &format!("{uniform} (uniform)"),
            BLUE,
            Dash::Dashed,
        ));
    }
    curves.push(strategy_curves(
        exp,
        summary,
        reference,
        &format!("{reference} (reference sampling)"),
        PURPLE,
        Dash::Dashed,
    ));
    let x_max = axis_max(max_of(all_points(&curves), |p| p.0));
    let y_max = axis_max(max_of(all_points(&curves), |p| p.1));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, FIGURE_SIZE).into_drawing_area();
        let title = format!(
            "{}: uniform vs reference rotation/shift sampling",
            figure_title(exp)
        );
        let (left, right) = layout(&root, &title, &curves, exp.runs.len())?;
        let (uniform, refc): (&[StrategyCurves], &[StrategyCurves]) = if curves.len() == 2 {
            (&curves[..1], &curves[1..])
        } else {
            (&[], &curves[..])
        };
        draw_panel(
            &left,
            "uniform sampling on the group",
            uniform,
            x_max,
            y_max,
        )?;
        draw_panel(&right, "reference (authors') sampling", refc, x_max, y_max)?;
        root.present().map_err(de)?;
    }
    Ok(Some(svg))
}

/// The held-out equivariance error at the last epoch (from `run.json`): per strategy, the max
/// (red) and mean (blue) of |Phi(g x) - g Phi(x)|, one small dot per run and a large one for
/// the median over runs, on a log scale (a 0 is drawn on the bottom edge). `None` when no
/// run recorded it.
pub fn equivariance_figure(exp: &Experiment) -> Result<Option<String>, FigureError> {
    equivariance_svg(exp).map_err(|m| FigureError::new(crate::schema::outputs::EQUIVARIANCE_SVG, m))
}

fn equivariance_svg(exp: &Experiment) -> DrawResult<Option<String>> {
    // (strategy, per-run [max, mean] values)
    let data: Vec<(&str, Vec<[f64; 2]>)> = exp
        .strategies
        .iter()
        .map(|s| {
            let v: Vec<[f64; 2]> = exp
                .runs
                .iter()
                .filter_map(|r| r.equivariance_error.get(s).copied())
                .collect();
            (s.as_str(), v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if data.is_empty() {
        return Ok(None);
    }
    let positive = data
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0);
    let (lo, hi) = positive.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (lo, hi) = if hi > 0.0 {
        (lo / 3.0, hi * 3.0)
    } else {
        (1e-20, 1.0)
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    };
    let n = data.len();
    let names: Vec<String> = data.iter().map(|(s, _)| s.to_string()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let title = format!(
            "{}: held-out equivariance error at the last epoch",
            figure_title(exp)
        );
        let body = root.titled(&title, ("sans-serif", 20)).map_err(de)?;
        let (legend, panel) = body.split_vertically(34);
        legend
            .draw(&Text::new(
                "red: max, blue: mean of |Phi(g x) - g Phi(x)| over held-out samples, output \
                 entries and sampled g; small: each run, large: median over runs (0 on the \
                 bottom edge)",
                (20, 9),
                ("sans-serif", 15).into_font().color(&BLACK),
            ))
            .map_err(de)?;
        let mut chart = ChartBuilder::on(&panel)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(48)
            .y_label_area_size(78)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, (lo..hi).log_scale())
            .map_err(de)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("strategy")
            .y_desc("|Phi(g x) - g Phi(x)|")
            .x_labels(n.max(2) * 2 + 1)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| tick(*v, hi))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(de)?;
        let clamp = |y: f64| if y > 0.0 { y.clamp(lo, hi) } else { lo };
        for (i, (_, runs)) in data.iter().enumerate() {
            for (k, (color, dx)) in [(RED, -0.12), (BLUE, 0.12)].into_iter().enumerate() {
                let x = i as f64 + dx;
                let values: Vec<f64> = runs.iter().map(|e| e[k]).collect();
                chart
                    .draw_series(
                        values
                            .iter()
                            .filter(|y| y.is_finite())
                            .map(|&y| Circle::new((x, clamp(y)), 3, color.mix(0.45).filled())),
                    )
                    .map_err(de)?;
                let finite: Vec<f64> = values.into_iter().filter(|y| y.is_finite()).collect();
                if !finite.is_empty() {
                    chart
                        .draw_series(std::iter::once(Circle::new(
                            (x, clamp(median(finite))),
                            7,
                            color.filled(),
                        )))
                        .map_err(de)?;
                }
            }
        }
        root.present().map_err(de)?;
    }
    Ok(Some(svg))
}
