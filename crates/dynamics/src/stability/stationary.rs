//! The stationary-point search in E ([`find_stationary_point`]): L-BFGS restricted to E, then
//! optionally trust-region Newton (dense on small E, Steihaug-Toint CG otherwise), and the
//! distance to the nearest LeakyReLU kink ([`min_abs_preactivation`]).

use super::basis::{coordinates, e_basis, BasisVector};
use super::dense::{check_dense_memory, dense_hessian_on_e};
use super::options::StationaryOptions;
use super::risk::Risk;
use super::trust_region::{
    evaluate_trial, ratio, trust_region_newton, trust_region_step, TrustRegionOutcome,
};
use crate::error::StabilityError;
use crate::hessian::{project_onto, Subspace};
use crate::TrainData;
use eqaug_nn::{Network, Params};

/// The stationary point reached, with how stationary it is.
#[derive(Clone, Debug)]
pub struct StationaryPoint {
    /// `A*` (in E).
    pub params: Params<f64>,
    /// L-BFGS iterations taken.
    pub iterations: usize,
    /// Trust-region Newton iterations taken after them.
    pub newton_iterations: usize,
    /// Hessian-vector products of the Newton stage (conjugate-gradient steps).
    pub newton_hvps: usize,
    /// Gradient evaluations taken (one HVP = two).
    pub gradient_evaluations: usize,
    /// `R` at the start and at `A*`.
    pub loss_start: f64,
    /// `R(A*)`.
    pub loss: f64,
    /// `||Pi_E grad R||` at the start.
    pub residual_start: f64,
    /// `||Pi_E grad R(A*)||`.
    pub residual: f64,
    /// Whether the relative tolerance was met.
    pub converged: bool,
    /// Why it stopped.
    pub stop_reason: String,
}

impl StationaryPoint {
    /// `residual / residual_start` (0 when the start was already stationary).
    pub fn relative_residual(&self) -> f64 {
        if self.residual_start > 0.0 {
            self.residual / self.residual_start
        } else {
            0.0
        }
    }
}

/// Minimises `R_eqv` (the risk restricted to E) from `a0` (projected onto E first) by L-BFGS
/// with Armijo backtracking, every vector projected onto E (module docs, step 1). The risk
/// should be the nominal one (cheapest; on E its gradient projected onto E equals the
/// augmented gradient, Proposition 1).
pub fn find_stationary_point(
    risk: &mut Risk<'_>,
    a0: &Params<f64>,
    opts: &StationaryOptions,
) -> Result<StationaryPoint, StabilityError> {
    let mut a = a0.clone();
    project_onto(&mut a, Subspace::Equivariant);
    let a0_norm = a.norm().max(1.0);
    let mut g = a.zeros_like();
    let start_count = risk.gradient_count();
    let mut f = risk.loss_and_gradient(&a, &mut g)?;
    project_onto(&mut g, Subspace::Equivariant);
    let (loss_start, residual_start) = (f, g.norm());
    let target = opts.rtol * residual_start;
    let mut s_hist: Vec<Params<f64>> = Vec::new();
    let mut y_hist: Vec<Params<f64>> = Vec::new();
    let mut it = 0;
    let mut reason = String::from("iteration budget exhausted");
    let mut converged = g.norm() <= target;
    if converged {
        reason = "already stationary at the start".into();
    }
    let mut g_new = a.zeros_like();
    while !converged && it < opts.max_iterations {
        it += 1;
        let (d, slope) = lbfgs_direction(&g, &mut s_hist, &mut y_hist);
        // Cap the step length (relative to the start, not to the current point, so that scale
        // invariant directions before a normalisation cannot grow geometrically): a long step
        // can land on a saturated plateau (tanh, sigmoid) whose gradient underflows, a
        // spurious "stationary point".
        let max_step = opts.max_step * a0_norm;
        let t = (max_step / d.norm().max(f64::MIN_POSITIVE)).min(1.0);
        let accepted = line_search(risk, &a, &d, (f, slope), &g, t, &mut g_new)?;
        let Some((trial, ft)) = accepted else {
            reason = "line search failed (round-off floor reached)".into();
            break;
        };
        remember(
            &trial,
            &a,
            &g_new,
            &g,
            (&mut s_hist, &mut y_hist),
            opts.memory,
        );
        a = trial;
        f = ft;
        g.copy_from(&g_new);
        if g.norm() <= target {
            converged = true;
            reason = format!("relative residual below {:e}", opts.rtol);
        }
    }
    let (mut newton_iterations, mut newton_hvps) = (0, 0);
    if !converged && opts.newton_iterations > 0 {
        let tr = newton_stage(risk, &mut a, &mut f, &mut g, target, a0_norm, opts)?;
        newton_iterations = tr.iterations;
        newton_hvps = tr.hvps;
        converged = tr.converged;
        reason = format!("after {it} L-BFGS iterations ({reason}): {}", tr.reason);
    }
    Ok(StationaryPoint {
        residual: g.norm(),
        params: a,
        iterations: it,
        newton_iterations,
        newton_hvps,
        gradient_evaluations: risk.gradient_count() - start_count,
        loss_start,
        loss: f,
        residual_start,
        converged,
        stop_reason: reason,
    })
}

/// The Newton stage after L-BFGS: [`dense_newton`] when `dim E` is at most
/// [`StationaryOptions::dense_limit`] (the dense Hessian's memory checked first),
/// [`trust_region_newton`] otherwise. Updates `a`, `f`, `g`.
fn newton_stage(
    risk: &mut Risk<'_>,
    a: &mut Params<f64>,
    f: &mut f64,
    g: &mut Params<f64>,
    target: f64,
    scale: f64,
    opts: &StationaryOptions,
) -> Result<TrustRegionOutcome, StabilityError> {
    let basis = e_basis(a.layout());
    if basis.len() <= opts.dense_limit {
        check_dense_memory(
            basis.len(),
            "stability.dense_limit",
            "the dense Hessian on E",
        )?;
        dense_newton(risk, a, f, g, target, scale, opts, &basis)
    } else {
        trust_region_newton(risk, a, f, g, target, scale, opts)
    }
}

/// The L-BFGS direction at gradient `g` from the pairs `(s, y)` (two-loop recursion), projected
/// onto E, with its slope `g.d`; not a descent direction: the pairs are dropped and steepest
/// descent (unit length) returned instead.
fn lbfgs_direction(
    g: &Params<f64>,
    s_hist: &mut Vec<Params<f64>>,
    y_hist: &mut Vec<Params<f64>>,
) -> (Params<f64>, f64) {
    let mut d = g.clone();
    let mut alphas = Vec::with_capacity(s_hist.len());
    for (s, y) in s_hist.iter().zip(y_hist.iter()).rev() {
        let rho = 1.0 / y.dot(s);
        let al = rho * s.dot(&d);
        d.axpy(-al, y);
        alphas.push((al, rho));
    }
    let gamma = match (s_hist.last(), y_hist.last()) {
        (Some(s), Some(y)) => s.dot(y) / y.dot(y),
        _ => 1.0 / g.norm().max(1e-300),
    };
    d.scale(gamma);
    for ((s, y), (al, rho)) in s_hist
        .iter()
        .zip(y_hist.iter())
        .zip(alphas.into_iter().rev())
    {
        let be = rho * y.dot(&d);
        d.axpy(al - be, s);
    }
    d.scale(-1.0);
    project_onto(&mut d, Subspace::Equivariant);
    let mut slope = g.dot(&d);
    if slope >= 0.0 {
        // Not a descent direction: restart from steepest descent.
        s_hist.clear();
        y_hist.clear();
        d = g.clone();
        d.scale(-1.0 / g.norm().max(1e-300));
        slope = g.dot(&d);
    }
    (d, slope)
}

/// Armijo backtracking along `d` from `a` (risk and slope `(f, slope)`, projected gradient
/// `g`), from step `t`, halving up to 50 times; a non-finite risk shrinks the step. At the
/// round-off floor of `f` a step that lowers the gradient is accepted. Returns the accepted
/// point and its risk (its projected gradient in `g_new`), or `None`.
fn line_search(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    d: &Params<f64>,
    (f, slope): (f64, f64),
    g: &Params<f64>,
    mut t: f64,
    g_new: &mut Params<f64>,
) -> Result<Option<(Params<f64>, f64)>, StabilityError> {
    for _ in 0..50 {
        let mut trial = a.clone();
        trial.axpy(t, d);
        match risk.loss_and_gradient(&trial, g_new) {
            Ok(ft) => {
                project_onto(g_new, Subspace::Equivariant);
                let armijo = ft <= f + 1e-4 * t * slope;
                let flat = (ft - f).abs() <= 1e-13 * f.abs().max(1e-300) && g_new.norm() < g.norm();
                if armijo || flat {
                    return Ok(Some((trial, ft)));
                }
            }
            Err(StabilityError::Invalid(_)) => {} // non-finite: shrink
            Err(e) => return Err(e),
        }
        t *= 0.5;
    }
    Ok(None)
}

/// Keeps the pair `(s, y) = (trial - a, g_new - g)` when its curvature `s.y` is positive
/// (relative to the norms), dropping the oldest pair beyond `memory`.
fn remember(
    trial: &Params<f64>,
    a: &Params<f64>,
    g_new: &Params<f64>,
    g: &Params<f64>,
    (s_hist, y_hist): (&mut Vec<Params<f64>>, &mut Vec<Params<f64>>),
    memory: usize,
) {
    let mut s = trial.clone();
    s.axpy(-1.0, a);
    let mut y = g_new.clone();
    y.axpy(-1.0, g);
    if s.dot(&y) > 1e-12 * s.norm() * y.norm() {
        s_hist.push(s);
        y_hist.push(y);
        if s_hist.len() > memory {
            s_hist.remove(0);
            y_hist.remove(0);
        }
    }
}

/// Trust-region Newton with the whole Hessian on E ([`StationaryOptions::dense_limit`]): the
/// Hessian in the orthonormal orbit basis from `dim E` HVPs, its eigen-decomposition, and the
/// exact trust-region step. Affine invariance makes it indifferent to the orbit sizes that make
/// these risks so ill-conditioned (the orbit of an all-entries sum spans thousands of weights);
/// a rejected step is retried with the same Hessian at no cost. Updates `a`, `f`, `g`.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_newton(
    risk: &mut Risk<'_>,
    a: &mut Params<f64>,
    f: &mut f64,
    g: &mut Params<f64>,
    target: f64,
    scale: f64,
    opts: &StationaryOptions,
    basis: &[BasisVector],
) -> Result<TrustRegionOutcome, StabilityError> {
    let n = basis.len();
    // The radius bounds the scaled step ||D p|| (D^2 = the Hessian's diagonal), a change of
    // the risk's quadratic model of about radius^2 / 2: start at a tenth of the risk.
    let _ = scale;
    let max_radius = 1e3 * f.abs().max(1e-3).sqrt();
    let mut radius = (0.2 * f.abs()).max(1e-8).sqrt();
    let mut out = TrustRegionOutcome {
        iterations: 0,
        hvps: 0,
        converged: g.norm() <= target,
        reason: format!(
            "Newton iteration budget ({}) exhausted",
            opts.newton_iterations
        ),
    };
    let mut eigen: Option<(Vec<f64>, Vec<Vec<f64>>)> = None;
    let mut d: Vec<f64> = vec![1.0; n];
    let mut fresh = true;
    let mut g_new = a.zeros_like();
    while !out.converged && out.iterations < opts.newton_iterations {
        out.iterations += 1;
        if eigen.is_none() {
            fresh = true;
            let (mut h, _) = dense_hessian_on_e(risk, a, basis)?;
            out.hvps += n;
            // Jacobi scaling: unit diagonal, so that the trust region is an ellipsoid fitted to
            // the curvatures (which span up to 7 decades here) rather than a ball.
            let top = (0..n).map(|i| h[i][i].abs()).fold(0.0, f64::max);
            d = (0..n)
                .map(|i| h[i][i].abs().max(1e-12 * top).max(f64::MIN_POSITIVE).sqrt())
                .collect();
            for i in 0..n {
                for j in 0..n {
                    h[i][j] /= d[i] * d[j];
                }
            }
            eigen = Some(crate::lanczos::symmetric_eigen(&h));
        }
        let (values, vectors) = eigen.as_ref().expect("just built");
        let gc: Vec<f64> = coordinates(basis, g.as_slice())
            .iter()
            .zip(&d)
            .map(|(x, di)| x / di)
            .collect();
        // Eigen-coordinates: ghat_k = sum_i V[i][k] gc_i.
        let ghat: Vec<f64> = (0..n)
            .map(|k| (0..n).map(|i| vectors[i][k] * gc[i]).sum())
            .collect();
        let (phat, boundary) = trust_region_step(values, &ghat, radius);
        let predicted = -phat
            .iter()
            .zip(&ghat)
            .zip(values)
            .map(|((p, gh), l)| p * gh + 0.5 * l * p * p)
            .sum::<f64>();
        let mut trial = a.clone();
        for (i, (idx, val)) in basis.iter().enumerate() {
            let c: f64 = (0..n).map(|k| vectors[i][k] * phat[k]).sum::<f64>() / d[i];
            for &e in idx {
                trial.as_mut_slice()[e] += c * val;
            }
        }
        let pn = phat.iter().map(|x| x * x).sum::<f64>().sqrt();
        let (ft, ok) = evaluate_trial(risk, &trial, &mut g_new)?;
        let gn = g.norm();
        let rho = ratio(*f, ft, predicted, ok, g_new.norm() < gn);
        if rho < 0.25 && !fresh {
            // A stale Hessian failed: rebuild it at this point before shrinking the region.
            eigen = None;
            continue;
        }
        if rho < 0.25 {
            radius = 0.25 * pn.min(radius);
        } else if rho > 0.75 && boundary {
            radius = (2.0 * radius).min(max_radius);
        }
        if rho > 1e-4 {
            a.copy_from(&trial);
            *f = ft;
            let contracted = g_new.norm() <= 0.25 * gn;
            g.copy_from(&g_new);
            // Near the minimum (a model that predicts well, a gradient that contracts fast)
            // the Hessian is reused: each further step then costs one gradient, not dim E
            // HVPs, and converges linearly at a rate set by the Hessian's change.
            if rho > 0.9 && contracted {
                fresh = false;
            } else {
                eigen = None;
            }
            out.check_converged(g, target, opts.rtol, "dense ");
        }
        if out.collapsed(radius, a) {
            break;
        }
    }
    Ok(out)
}

/// The smallest `|pre-activation|` at the input of any LeakyReLU over the data (statistics
/// per `minibatch` rows, untransformed data): the distance to the nearest kink, where `R` has
/// no Hessian. `None` when the network has no kinked layer (e.g. smooth LeakyReLU).
pub fn min_abs_preactivation(
    net: &Network<f64>,
    params: &Params<f64>,
    data: &TrainData<f64>,
    minibatch: usize,
) -> Result<Option<f64>, StabilityError> {
    let mut ws = net.workspace(data.len());
    let m = net.min_abs_preactivation(params, data.x.view(), minibatch, &mut ws)?;
    Ok(if m == f64::INFINITY { None } else { Some(m) })
}
