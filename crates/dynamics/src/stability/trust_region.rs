//! Trust-region solvers of the Newton stage: Steihaug-Toint truncated CG
//! ([`steihaug_cg`], [`trust_region_newton`]), the exact step in eigen-coordinates
//! ([`trust_region_step`]) and the ratio test ([`ratio`]).

use super::options::StationaryOptions;
use super::risk::Risk;
use crate::error::StabilityError;
use crate::hessian::{project_onto, Subspace};
use eqaug_nn::Params;

/// What the trust-region Newton stage did.
pub(super) struct TrustRegionOutcome {
    pub(super) iterations: usize,
    pub(super) hvps: usize,
    pub(super) converged: bool,
    pub(super) reason: String,
}

impl TrustRegionOutcome {
    /// Marks convergence once `||g|| <= target`.
    pub(super) fn check_converged(&mut self, g: &Params<f64>, target: f64, rtol: f64, kind: &str) {
        if g.norm() <= target {
            self.converged = true;
            self.reason = format!(
                "relative residual below {rtol:e} after {} {kind}Newton iterations",
                self.iterations
            );
        }
    }

    /// Whether the region has shrunk to the round-off floor (and says so).
    pub(super) fn collapsed(&mut self, radius: f64, a: &Params<f64>) -> bool {
        let c = !self.converged && radius <= 1e-15 * a.norm().max(1.0);
        if c {
            self.reason = "trust region collapsed (round-off floor reached)".into();
        }
        c
    }
}

/// The risk and projected gradient at a trial point; a non-finite risk is `(inf, false)` (a
/// rejected step), not an error.
pub(super) fn evaluate_trial(
    risk: &mut Risk<'_>,
    trial: &Params<f64>,
    g_new: &mut Params<f64>,
) -> Result<(f64, bool), StabilityError> {
    match risk.loss_and_gradient(trial, g_new) {
        Ok(ft) => {
            project_onto(g_new, Subspace::Equivariant);
            Ok((ft, true))
        }
        Err(StabilityError::Invalid(_)) => Ok((f64::INFINITY, false)),
        Err(e) => Err(e),
    }
}

/// The Steihaug-Toint truncated conjugate-gradient solution of the trust-region model
/// `min g.p + p.B p / 2, ||p|| <= radius, p in E` (`B = Pi_E Hess R Pi_E`), with `B p`.
/// Stops at the boundary, at a direction of non-positive curvature (followed to the boundary:
/// this is how the Newton stage leaves saddle points within E), or when the CG residual falls
/// below `tol`.
pub(super) fn steihaug_cg(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    g: &Params<f64>,
    radius: f64,
    tol: f64,
    max_steps: usize,
) -> Result<(Params<f64>, Params<f64>, bool, usize), StabilityError> {
    let mut z = a.zeros_like();
    let mut bz = a.zeros_like();
    let mut r = g.clone();
    let mut d = g.clone();
    d.scale(-1.0);
    let mut bd = a.zeros_like();
    // tau >= 0 with ||z + tau d|| = radius.
    let to_boundary = |z: &Params<f64>, d: &Params<f64>| {
        let (qa, qb, qc) = (d.dot(d), 2.0 * z.dot(d), z.dot(z) - radius * radius);
        (-qb + (qb * qb - 4.0 * qa * qc).max(0.0).sqrt()) / (2.0 * qa)
    };
    let mut rr = r.dot(&r);
    for step in 0..max_steps {
        risk.hvp(a, &d, &mut bd)?;
        project_onto(&mut bd, Subspace::Equivariant);
        let dbd = d.dot(&bd);
        if dbd <= 0.0 {
            let tau = to_boundary(&z, &d);
            z.axpy(tau, &d);
            bz.axpy(tau, &bd);
            return Ok((z, bz, true, step + 1));
        }
        let alpha = rr / dbd;
        let mut z_next = z.clone();
        z_next.axpy(alpha, &d);
        if z_next.norm() >= radius {
            let tau = to_boundary(&z, &d);
            z.axpy(tau, &d);
            bz.axpy(tau, &bd);
            return Ok((z, bz, true, step + 1));
        }
        z = z_next;
        bz.axpy(alpha, &bd);
        r.axpy(alpha, &bd);
        let rr_next = r.dot(&r);
        if rr_next.sqrt() <= tol {
            return Ok((z, bz, false, step + 1));
        }
        d.scale(rr_next / rr);
        d.axpy(-1.0, &r);
        rr = rr_next;
    }
    Ok((z, bz, false, max_steps))
}

/// Trust-region Newton with Steihaug-Toint CG on E (Nocedal and Wright, algorithms 4.1 and
/// 7.2), using the central-difference HVPs: quadratic convergence near a non-degenerate
/// minimum, where L-BFGS on these ill-conditioned risks (curvatures spanning 6 to 7 decades)
/// crawls, and an escape from saddle points within E along negative curvature. The CG forcing
/// term `min(0.1, sqrt(||g|| / ||g0||)) ||g||` makes the convergence superlinear. Updates
/// `a`, `f`, `g` in place.
pub(super) fn trust_region_newton(
    risk: &mut Risk<'_>,
    a: &mut Params<f64>,
    f: &mut f64,
    g: &mut Params<f64>,
    target: f64,
    scale: f64,
    opts: &StationaryOptions,
) -> Result<TrustRegionOutcome, StabilityError> {
    let g0 = g.norm().max(f64::MIN_POSITIVE);
    let max_radius = scale;
    let mut radius = opts.max_step * scale;
    let mut g_new = a.zeros_like();
    let mut out = TrustRegionOutcome {
        iterations: 0,
        hvps: 0,
        converged: g.norm() <= target,
        reason: String::new(),
    };
    out.reason = format!(
        "Newton iteration budget ({}) exhausted",
        opts.newton_iterations
    );
    while !out.converged && out.iterations < opts.newton_iterations {
        out.iterations += 1;
        let gn = g.norm();
        let tol = (gn / g0).sqrt().min(0.1) * gn;
        let (p, bp, boundary, steps) = steihaug_cg(risk, a, g, radius, tol, opts.cg_steps)?;
        out.hvps += steps;
        let predicted = -(g.dot(&p) + 0.5 * p.dot(&bp));
        let mut trial = a.clone();
        trial.axpy(1.0, &p);
        let (ft, ok) = evaluate_trial(risk, &trial, &mut g_new)?;
        let rho = ratio(*f, ft, predicted, ok, g_new.norm() < gn);
        let pn = p.norm();
        if rho < 0.25 {
            radius = 0.25 * pn.min(radius);
        } else if rho > 0.75 && boundary {
            radius = (2.0 * radius).min(max_radius);
        }
        if rho > 1e-4 {
            a.copy_from(&trial);
            *f = ft;
            g.copy_from(&g_new);
            out.check_converged(g, target, opts.rtol, "");
        }
        if out.collapsed(radius, a) {
            break;
        }
    }
    Ok(out)
}

/// The exact trust-region step in eigen-coordinates: `p = -(Lambda + lambda I)^-1 g` with the
/// smallest `lambda >= max(0, -lambda_min)` such that `||p|| <= radius` (Moré and Sorensen; the
/// "hard case", `g` orthogonal to the lowest eigenvector, is completed along that vector to the
/// boundary). Returns the step and whether it lies on the boundary.
pub(super) fn trust_region_step(values: &[f64], g: &[f64], radius: f64) -> (Vec<f64>, bool) {
    let step = |lambda: f64| -> Vec<f64> {
        values
            .iter()
            .zip(g)
            .map(|(&l, &gi)| -gi / (l + lambda))
            .collect()
    };
    let norm = |p: &[f64]| p.iter().map(|x| x * x).sum::<f64>().sqrt();
    let lmin = values.iter().copied().fold(f64::INFINITY, f64::min);
    let scale = values
        .iter()
        .map(|x| x.abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    if lmin > 1e-12 * scale {
        let p = step(0.0);
        if norm(&p) <= radius {
            return (p, false);
        }
    }
    let lo0 = (-lmin).max(0.0);
    // ||p(lambda)|| decreases in lambda on (lo0, inf): bisection (in a geometric bracket).
    let mut lo = lo0 + 1e-14 * scale;
    let p_lo = step(lo);
    if norm(&p_lo) < radius {
        // Hard case: move along the lowest eigenvector to the boundary.
        let imin = values
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let mut p = p_lo;
        let rest = radius * radius - p.iter().map(|x| x * x).sum::<f64>();
        p[imin] += rest.max(0.0).sqrt();
        return (p, true);
    }
    let mut hi = lo0 + scale.max(1.0);
    while norm(&step(hi)) > radius {
        hi = lo0 + 2.0 * (hi - lo0);
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if norm(&step(mid)) > radius {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    (step(hi), true)
}

/// The trust-region ratio of actual to predicted reduction; at the round-off floor of `f`
/// (both reductions below `1e-12 |f|`), 1 if the gradient decreased and 0 otherwise.
pub(super) fn ratio(f: f64, ft: f64, predicted: f64, ok: bool, gradient_decreased: bool) -> f64 {
    let actual = f - ft;
    let floor = 1e-12 * f.abs().max(f64::MIN_POSITIVE);
    if !ok {
        f64::NEG_INFINITY
    } else if predicted.abs() <= floor && actual.abs() <= floor {
        if gradient_decreased {
            1.0
        } else {
            0.0
        }
    } else if predicted > 0.0 {
        actual / predicted
    } else {
        f64::NEG_INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The Moré-Sorensen conditions of the exact trust-region step, checked on random
    /// diagonal models: `||p|| <= radius`; `(Lambda + lambda I) p = -g` with `lambda >= 0`,
    /// `Lambda + lambda I` positive semi-definite and `lambda (radius - ||p||) = 0`; and no
    /// random feasible point has a lower model value.
    #[test]
    fn trust_region_step_satisfies_the_optimality_conditions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for case in 0..200 {
            let n = 1 + case % 7;
            let values: Vec<f64> = (0..n).map(|_| rng.gen_range(-2.0..3.0)).collect();
            let g: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let radius = rng.gen_range(0.05..3.0);
            let (p, boundary) = trust_region_step(&values, &g, radius);
            let pn = p.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!(pn <= radius * (1.0 + 1e-9), "case {case}: {pn} > {radius}");
            let model = |p: &[f64]| -> f64 {
                p.iter()
                    .zip(&g)
                    .zip(&values)
                    .map(|((p, g), l)| g * p + 0.5 * l * p * p)
                    .sum()
            };
            if boundary {
                assert!((pn - radius).abs() <= 1e-9 * radius, "case {case}");
            }
            // lambda from any coordinate with p_i != 0.
            let i = (0..n)
                .max_by(|&i, &j| p[i].abs().total_cmp(&p[j].abs()))
                .unwrap();
            let lambda = -g[i] / p[i] - values[i];
            let lmin = values.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(
                lambda >= -1e-9 && lambda + lmin >= -1e-9,
                "case {case}: {lambda}"
            );
            for _ in 0..200 {
                let mut q: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
                let r = radius * rng.gen_range(0.0f64..1.0).sqrt();
                q.iter_mut().for_each(|x| *x *= r / qn);
                assert!(
                    model(&q) >= model(&p) - 1e-12,
                    "case {case}: {} < {}",
                    model(&q),
                    model(&p)
                );
            }
        }
    }
}
