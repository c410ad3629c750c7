//! The analysis' exact Hessian-vector products against independent oracles: central
//! differences of the gradient (within their error budget) on nominal and exactly averaged
//! risks with batch and layer norm, in E and off E; and every printed "+-" of the extreme
//! eigenvalues against the eigenvalues of a dense Hessian built from the gradient by
//! Richardson differences and restricted to E and E-perp, dense blocks and Lanczos alike.

use eqaug_dynamics::hessian::{project_onto, Subspace};
use eqaug_dynamics::lanczos::symmetric_eigen;
use eqaug_dynamics::stability::{self, HvpMethod, Risk, StabilityOptions};
use eqaug_dynamics::TrainData;
use eqaug_groups::{Group, Rep};
use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, NormOver, Params, Points};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn net(norm: Option<LayerSpec>) -> Network<f64> {
    let g = |channels, points| LayerSpec::Group {
        channels,
        points,
        init_std: 0.7,
        constant_over_positions: false,
    };
    let mut layers = vec![g(2, Points::Base), LayerSpec::Tanh];
    layers.extend(norm);
    layers.extend([
        g(2, Points::Trivial),
        LayerSpec::Softplus,
        LayerSpec::Dense {
            out: 1,
            init_scale: 0.8,
            bias: true,
        },
        LayerSpec::Sigmoid,
    ]);
    let spec = NetworkSpec { layers };
    Network::new(
        &spec,
        Group::builtin("rot", 2).unwrap(),
        Rep::base(1),
        Loss::Bce,
    )
    .unwrap()
}

fn data(net: &Network<f64>, n: usize, rng: &mut ChaCha8Rng) -> TrainData<f64> {
    let x = Array2::from_shape_fn((n, net.input_width()), |_| rng.gen_range(-1.0..1.0));
    let t = Array2::from_shape_fn((n, 1), |_| if rng.gen::<bool>() { 1.0 } else { 0.0 });
    TrainData {
        x,
        targets: t,
        input_rep: net.input_rep(),
        target_rep: None,
    }
}

fn norms() -> Vec<Option<LayerSpec>> {
    vec![
        None,
        Some(LayerSpec::BatchNorm {
            over: NormOver::Channels,
        }),
        Some(LayerSpec::LayerNorm {
            over: NormOver::Channels,
        }),
    ]
}

/// Exact against central differences (relative step 1e-6, error about 1e-7 relative, see
/// `crate::hessian::hvp`): within 1e-6 of `||H v||`, for the nominal and the exact augmented
/// risk, at a point in E and one off E.
#[test]
fn exact_products_agree_with_central_differences() {
    let elements = Group::builtin("rot", 2).unwrap().elements(100).unwrap();
    for (k, norm) in norms().into_iter().enumerate() {
        let net = net(norm);
        let mut rng = ChaCha8Rng::seed_from_u64(5 + k as u64);
        let d = data(&net, 12, &mut rng);
        let mut a = net.init_params(&mut rng);
        let off = a.clone();
        project_onto(&mut a, Subspace::Equivariant);
        for point in [&a, &off] {
            for els in [None, Some(elements.clone())] {
                let mut v = point.zeros_like();
                v.as_mut_slice()
                    .iter_mut()
                    .for_each(|x| *x = rng.gen_range(-1.0..1.0));
                let mut r = Risk::new(&net, &d, 4, els.clone()).unwrap();
                assert_eq!(r.hvp_method(), HvpMethod::Exact);
                let (mut he, mut hc) = (point.zeros_like(), point.zeros_like());
                r.hvp(point, &v, &mut he).unwrap();
                // a second product at the kept point is the same
                let mut he2 = point.zeros_like();
                r.hvp(point, &v, &mut he2).unwrap();
                assert_eq!(he.as_slice(), he2.as_slice());
                r.set_hvp_method(HvpMethod::CentralDifferences).unwrap();
                r.hvp(point, &v, &mut hc).unwrap();
                let mut diff = he.clone();
                diff.axpy(-1.0, &hc);
                let rel = diff.norm() / he.norm();
                eprintln!(
                    "norm {k}, augmented {}: relative difference {rel:e}",
                    els.is_some()
                );
                assert!(he.norm() > 0.0);
                assert!(rel < 1e-6, "exact vs central differences: {rel:e}");
            }
        }
    }
}

/// Richardson-extrapolated central differences of the risk's gradient (two levels, h = 2e-4:
/// error about 1e-11 relative), column by column.
fn dense_hessian(risk: &mut Risk<'_>, a: &Params<f64>) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut q = a.clone();
    let mut g = a.zeros_like();
    let mut cols = Vec::with_capacity(n);
    let h = 2e-4;
    for j in 0..n {
        let x = a.as_slice()[j];
        let mut d = |h: f64| {
            q.as_mut_slice()[j] = x + h;
            risk.loss_and_gradient(&q, &mut g).unwrap();
            let gp = g.as_slice().to_vec();
            q.as_mut_slice()[j] = x - h;
            risk.loss_and_gradient(&q, &mut g).unwrap();
            q.as_mut_slice()[j] = x;
            gp.iter()
                .zip(g.as_slice())
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect::<Vec<_>>()
        };
        let (d1, d2, d4) = (d(h), d(h / 2.0), d(h / 4.0));
        cols.push(
            (0..n)
                .map(|i| {
                    let r1 = (4.0 * d2[i] - d1[i]) / 3.0;
                    let r2 = (4.0 * d4[i] - d2[i]) / 3.0;
                    (16.0 * r2 - r1) / 15.0
                })
                .collect(),
        );
    }
    cols
}

/// An orthonormal basis of the subspace (projections of the unit vectors, Gram-Schmidt).
fn basis(a: &Params<f64>, sub: Subspace) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    for j in 0..a.len() {
        let mut e = a.zeros_like();
        e.as_mut_slice()[j] = 1.0;
        project_onto(&mut e, sub);
        let mut v = e.as_slice().to_vec();
        for _ in 0..2 {
            for b in &out {
                let c: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
        }
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if nv > 1e-8 {
            v.iter_mut().for_each(|x| *x /= nv);
            out.push(v);
        }
    }
    out
}

/// The eigenvalues of `Q^T H Q`, ascending.
fn restricted_eigenvalues(h: &[Vec<f64>], q: &[Vec<f64>]) -> Vec<f64> {
    let n = h.len();
    let hq: Vec<Vec<f64>> = q
        .iter()
        .map(|b| {
            (0..n)
                .map(|i| (0..n).map(|j| h[j][i] * b[j]).sum())
                .collect()
        })
        .collect();
    let m: Vec<Vec<f64>> = q
        .iter()
        .map(|bi| {
            hq.iter()
                .map(|hb| bi.iter().zip(hb).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    let m: Vec<Vec<f64>> = (0..m.len())
        .map(|i| (0..m.len()).map(|j| 0.5 * (m[i][j] + m[j][i])).collect())
        .collect();
    let mut v = symmetric_eigen(&m).0;
    v.sort_by(f64::total_cmp);
    v
}

/// Every "+-" of the extreme eigenvalues contains the difference to the dense oracle's (with
/// the oracle's own error, 1e-9 of the largest |eigenvalue|, added), for dense blocks and for
/// Lanczos blocks, and none is 0.
#[test]
fn every_error_bar_contains_the_error() {
    let elements = Group::builtin("rot", 2).unwrap().elements(100).unwrap();
    for (k, norm) in norms().into_iter().enumerate() {
        let net = net(norm);
        let mut rng = ChaCha8Rng::seed_from_u64(40 + k as u64);
        let d = data(&net, 12, &mut rng);
        let a0 = net.init_params(&mut rng);
        for dense in [true, false] {
            let mut opts = StabilityOptions {
                minibatch: 4,
                weight_decay: 1e-2,
                escape_steps: 0,
                lanczos_steps: 30,
                ..StabilityOptions::default()
            };
            opts.stationary.newton_iterations = 0;
            opts.stationary.max_iterations = 200;
            if dense {
                opts.perp_dense_limit = 1000;
            } else {
                opts.stationary.dense_limit = 0;
            }
            let an = stability::analyse_point(&net, &d, &a0, &opts).unwrap();
            let (r, a) = (an.report.clone(), an.point.clone());
            assert!(r.hvp_error > 0.0);
            let mut nominal = Risk::new(&net, &d, 4, None).unwrap();
            nominal.set_weight_decay(opts.weight_decay);
            let mut aug = Risk::new(&net, &d, 4, Some(elements.clone())).unwrap();
            aug.set_weight_decay(opts.weight_decay);
            // the kept vectors: unit, in their subspace, with Rayleigh quotients equal to the
            // reported extremes within their error bars
            for (v, perp, value, err) in [
                (&an.e_min, false, r.e_block.min, r.e_block.min_error),
                (&an.e_max, false, r.e_block.max, r.e_block.max_error),
                (&an.perp_min, true, r.perp_block.min, r.perp_block.min_error),
                (&an.perp_max, true, r.perp_block.max, r.perp_block.max_error),
            ] {
                let (risk, sub) = if perp {
                    (&mut aug, Subspace::Orthogonal)
                } else {
                    (&mut nominal, Subspace::Equivariant)
                };
                assert!((v.norm() - 1.0).abs() < 1e-12);
                let mut w = v.clone();
                project_onto(&mut w, sub);
                w.axpy(-1.0, v);
                assert!(w.norm() < 1e-12, "a kept vector leaves its subspace");
                let mut hv = a.zeros_like();
                risk.hvp(&a, v, &mut hv).unwrap();
                let q = v.dot(&hv);
                assert!(
                    (q - value).abs() <= err,
                    "Rayleigh quotient {q:e} vs {value:e} +- {err:e}"
                );
            }
            let he = dense_hessian(&mut nominal, &a);
            let hp = dense_hessian(&mut aug, &a);
            let ev_e = restricted_eigenvalues(&he, &basis(&a, Subspace::Equivariant));
            let ev_p = restricted_eigenvalues(&hp, &basis(&a, Subspace::Orthogonal));
            let scale = ev_e.iter().chain(&ev_p).fold(0.0f64, |m, x| m.max(x.abs()));
            let oracle_err = 1e-9 * scale;
            for (name, got, err, want) in [
                ("E min", r.e_block.min, r.e_block.min_error, ev_e[0]),
                (
                    "E max",
                    r.e_block.max,
                    r.e_block.max_error,
                    *ev_e.last().unwrap(),
                ),
                (
                    "perp min",
                    r.perp_block.min,
                    r.perp_block.min_error,
                    ev_p[0],
                ),
                (
                    "perp max",
                    r.perp_block.max,
                    r.perp_block.max_error,
                    *ev_p.last().unwrap(),
                ),
            ] {
                eprintln!(
                    "norm {k}, dense {dense}, {name}: {got:e} +- {err:e}, oracle {want:e}, difference {:e}",
                    (got - want).abs()
                );
                assert!(err > 0.0, "{name}: a +- of 0");
                assert!(
                    (got - want).abs() <= err + oracle_err,
                    "norm {k}, dense {dense}, {name}: {got:e} +- {err:e} misses the oracle's {want:e}"
                );
            }
        }
    }
}
