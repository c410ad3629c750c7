//! The stability analysis against independent oracles: HVPs against a dense Hessian built
//! column by column (Richardson-extrapolated central differences of the gradient, and second
//! differences of the loss alone) for every layer kind and loss; the E / E-perp block structure
//! of `Hess R_aug` at equivariant points (Proposition 2, docs/science.md §10(d)); predicted against
//! measured escape on the worked example and on a tiny network.

use eqaug_dynamics::hessian::{project_onto, Subspace};
use eqaug_dynamics::stability::{self, Risk, StabilityOptions, Verdict};
use eqaug_dynamics::{worked_example, TrainData};
use eqaug_groups::{Group, Rep};
use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, NormOver, Params, Points};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn group(channels: usize, points: Points) -> LayerSpec {
    LayerSpec::Group {
        channels,
        points,
        init_std: 0.7,
        constant_over_positions: false,
    }
}

fn dense(out: usize, bias: bool) -> LayerSpec {
    LayerSpec::Dense {
        out,
        init_scale: 0.8,
        bias,
    }
}

/// Random data for `net`: inputs N(0,1)-ish, targets fitting the loss.
fn data(net: &Network<f64>, n: usize, rng: &mut ChaCha8Rng) -> TrainData<f64> {
    let x = Array2::from_shape_fn((n, net.input_width()), |_| rng.gen_range(-1.0..1.0));
    let w = net.output_width();
    let targets = match net.loss_kind() {
        l if l.is_binary_cross_entropy() => {
            Array2::from_shape_fn((n, w), |_| if rng.gen::<bool>() { 1.0 } else { 0.0 })
        }
        Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities => {
            let mut t = Array2::zeros((n, w));
            for i in 0..n {
                t[[i, rng.gen_range(0..w)]] = 1.0;
            }
            t
        }
        _ => Array2::from_shape_fn((n, w), |_| rng.gen_range(-1.0..1.0)),
    };
    let target_rep = (net.loss_kind() == Loss::SegmentationBce).then(|| net.output_rep());
    TrainData {
        x,
        targets,
        input_rep: net.input_rep(),
        target_rep,
    }
}

/// A generic point: the initialisation plus a random perturbation off E.
fn generic_point(net: &Network<f64>, rng: &mut ChaCha8Rng) -> Params<f64> {
    let mut a = net.init_params(rng);
    for v in a.as_mut_slice() {
        *v += 0.3 * rng.gen_range(-1.0..1.0);
    }
    a
}

fn grad(risk: &mut Risk<'_>, a: &Params<f64>) -> Params<f64> {
    let mut g = a.zeros_like();
    risk.loss_and_gradient(a, &mut g).unwrap();
    g
}

/// The dense Hessian, column j by Richardson extrapolation of central differences of the
/// gradient along e_j (error O(h^4)), symmetrised; also returns the asymmetry before
/// symmetrisation relative to the largest entry.
fn dense_hessian(risk: &mut Risk<'_>, a: &Params<f64>) -> (Vec<Vec<f64>>, f64) {
    let n = a.len();
    let h = 2e-4;
    let d = |risk: &mut Risk<'_>, j: usize, h: f64| -> Vec<f64> {
        let mut p = a.clone();
        p.as_mut_slice()[j] += h;
        let gp = grad(risk, &p);
        p.as_mut_slice()[j] -= 2.0 * h;
        let gm = grad(risk, &p);
        gp.as_slice()
            .iter()
            .zip(gm.as_slice())
            .map(|(x, y)| (x - y) / (2.0 * h))
            .collect()
    };
    let mut cols = Vec::new();
    for j in 0..n {
        let d1 = d(risk, j, h);
        let d2 = d(risk, j, h / 2.0);
        cols.push(
            d1.iter()
                .zip(&d2)
                .map(|(a1, a2)| (4.0 * a2 - a1) / 3.0)
                .collect::<Vec<f64>>(),
        );
    }
    let scale = cols.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut asym = 0.0f64;
    let mut hm = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..n {
            asym = asym.max((cols[j][i] - cols[i][j]).abs());
            hm[i][j] = 0.5 * (cols[j][i] + cols[i][j]);
        }
    }
    (hm, asym / scale)
}

fn check_hvp(name: &str, spec: NetworkSpec, grp: &str, size: usize, loss: Loss, augmented: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let g = Group::builtin(grp, size).unwrap();
    let net = Network::<f64>::new(&spec, g.clone(), Rep::base(1), loss).unwrap();
    let d = data(&net, 12, &mut rng);
    let elements = augmented.then(|| g.elements(1000).unwrap());
    let mut risk = Risk::new(&net, &d, 4, elements).unwrap();
    let a = generic_point(&net, &mut rng);
    if let Some(k) = stability::min_abs_preactivation(&net, &a, &d, 4).unwrap() {
        assert!(
            k > 1e-4,
            "{name}: a LeakyReLU input at {k}, too close to a kink"
        );
    }
    let (hm, asym) = dense_hessian(&mut risk, &a);
    assert!(asym < 1e-8, "{name}: dense Hessian asymmetric by {asym:e}");
    // Diagonal entries against second differences of the loss alone (no gradient code).
    let f0 = risk.loss(&a).unwrap();
    let hmax = hm.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    for j in (0..a.len()).step_by(7) {
        let hh = 1e-4;
        let mut p = a.clone();
        p.as_mut_slice()[j] += hh;
        let fp = risk.loss(&p).unwrap();
        p.as_mut_slice()[j] -= 2.0 * hh;
        let fm = risk.loss(&p).unwrap();
        let fd = (fp - 2.0 * f0 + fm) / (hh * hh);
        assert!(
            (fd - hm[j][j]).abs() <= 1e-5 * hmax.max(1.0),
            "{name}: H[{j}][{j}] = {} vs loss second difference {fd}",
            hm[j][j]
        );
    }
    let mut worst = 0.0f64;
    for _ in 0..3 {
        let mut v = a.zeros_like();
        for x in v.as_mut_slice() {
            *x = rng.gen_range(-1.0..1.0);
        }
        let mut hv = a.zeros_like();
        risk.hvp(&a, &v, &mut hv).unwrap();
        let dense_hv: Vec<f64> = hm
            .iter()
            .map(|row| row.iter().zip(v.as_slice()).map(|(h, x)| h * x).sum())
            .collect();
        let err: f64 = hv
            .as_slice()
            .iter()
            .zip(&dense_hv)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt();
        let nrm = dense_hv.iter().map(|x| x * x).sum::<f64>().sqrt();
        worst = worst.max(err / nrm);
    }
    assert!(worst <= 1e-7, "{name}: HVP relative error {worst:e}");
    eprintln!("{name}: {} params, HVP relative error {worst:.2e}", a.len());
}

#[test]
fn hvp_matches_dense_hessian_group_tanh_batchnorm_dense_bce() {
    check_hvp(
        "group/tanh/batch_norm(features)/dense+bias/sigmoid, bce",
        NetworkSpec {
            layers: vec![
                group(2, Points::Base),
                LayerSpec::Tanh,
                group(3, Points::Trivial),
                LayerSpec::BatchNorm {
                    over: NormOver::Features,
                },
                dense(1, true),
                LayerSpec::Sigmoid,
            ],
        },
        "rot",
        2,
        Loss::Bce,
        false,
    );
}

#[test]
fn hvp_matches_dense_hessian_leaky_relu_layer_norm_softmax() {
    check_hvp(
        "group/leaky_relu/layer_norm(features)/dense/softmax, cross-entropy on probabilities",
        NetworkSpec {
            layers: vec![
                group(2, Points::Base),
                LayerSpec::LeakyRelu { slope: 0.1 },
                group(4, Points::Trivial),
                LayerSpec::LayerNorm {
                    over: NormOver::Features,
                },
                dense(3, false),
                LayerSpec::Softmax,
            ],
        },
        "trans2d",
        2,
        Loss::CrossEntropyOnProbabilities,
        false,
    );
}

#[test]
fn hvp_matches_dense_hessian_softplus_logits() {
    check_hvp(
        "group/softplus/dense+bias, cross-entropy on logits (augmented risk)",
        NetworkSpec {
            layers: vec![
                group(2, Points::Base),
                LayerSpec::Softplus,
                group(3, Points::Trivial),
                dense(3, true),
            ],
        },
        "rot",
        2,
        Loss::CrossEntropyLogits,
        true,
    );
}

#[test]
fn hvp_matches_dense_hessian_segmentation_batchnorm_channels() {
    check_hvp(
        "group/sigmoid/group/batch_norm(channels)/sigmoid, segmentation bce (augmented)",
        NetworkSpec {
            layers: vec![
                group(2, Points::Base),
                LayerSpec::Sigmoid,
                group(2, Points::Base),
                LayerSpec::BatchNorm {
                    over: NormOver::Channels,
                },
                LayerSpec::Sigmoid,
            ],
        },
        "rot",
        2,
        Loss::SegmentationBce,
        true,
    );
}

#[test]
fn hvp_matches_dense_hessian_layer_norm_channels_mse() {
    check_hvp(
        "group/tanh/layer_norm(channels)/group, mse",
        NetworkSpec {
            layers: vec![
                group(3, Points::Base),
                LayerSpec::Tanh,
                LayerSpec::LayerNorm {
                    over: NormOver::Channels,
                },
                group(1, Points::Base),
            ],
        },
        "perm",
        3,
        Loss::Mse,
        false,
    );
}

/// A small C_4 network at an equivariant point: `Hess R_aug` maps E to E and E-perp to E-perp.
#[test]
fn augmented_hessian_is_block_diagonal_at_equivariant_points() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let g = Group::builtin("rot", 4).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(2, Points::Base),
            LayerSpec::Tanh,
            group(3, Points::Trivial),
            LayerSpec::BatchNorm {
                over: NormOver::Features,
            },
            dense(2, true),
        ],
    };
    let net =
        Network::<f64>::new(&spec, g.clone(), Rep::base(1), Loss::CrossEntropyLogits).unwrap();
    let d = data(&net, 16, &mut rng);
    let mut aug = Risk::new(&net, &d, 8, Some(g.elements(10).unwrap())).unwrap();
    let a = net.init_params(&mut rng);
    assert!(a.distance_to_equivariant() < 1e-12);
    for (from, to, tol) in [
        (Subspace::Equivariant, Subspace::Orthogonal, 1e-9),
        (Subspace::Orthogonal, Subspace::Equivariant, 1e-7),
    ] {
        let mut v = a.zeros_like();
        for x in v.as_mut_slice() {
            *x = rng.gen_range(-1.0..1.0);
        }
        project_onto(&mut v, from);
        let mut hv = a.zeros_like();
        aug.hvp(&a, &v, &mut hv).unwrap();
        let mut leak = hv.clone();
        project_onto(&mut leak, to);
        let r = leak.norm() / hv.norm();
        eprintln!("{from:?} -> {to:?}: relative leak {r:e}");
        assert!(r < tol, "{from:?} -> {to:?}: relative leak {r:e}");
    }
    // The nominal Hessian is not block diagonal: the test can fail.
    let mut nominal = Risk::new(&net, &d, 8, None).unwrap();
    let mut v = a.zeros_like();
    for x in v.as_mut_slice() {
        *x = rng.gen_range(-1.0..1.0);
    }
    project_onto(&mut v, Subspace::Equivariant);
    let mut hv = a.zeros_like();
    nominal.hvp(&a, &v, &mut hv).unwrap();
    let mut leak = hv.clone();
    project_onto(&mut leak, Subspace::Orthogonal);
    assert!(leak.norm() / hv.norm() > 1e-3);
}

/// Small Lanczos runs; the stationary-point search, refinement and enumeration limit of the
/// library's defaults before the harness's became them (L-BFGS only, 500 iterations; no
/// refinement; groups of up to 100 000 elements enumerated).
fn quick_options() -> StabilityOptions {
    StabilityOptions {
        stationary: stability::StationaryOptions {
            max_iterations: 500,
            newton_iterations: 0,
            ..Default::default()
        },
        lanczos_steps: 20,
        lanczos_runs: 2,
        refine_steps: 0,
        enumeration_limit: 100_000,
        escape_steps: 30,
        ..StabilityOptions::default()
    }
}

#[test]
fn worked_example_eigenvalues_and_escape() {
    let r = worked_example::stability(&quick_options()).unwrap();
    // MSE = twice the example's risk: eigenvalues 1/2 and (ln 2 - 1)/2.
    let lam_perp = (std::f64::consts::LN_2 - 1.0) / 2.0;
    assert!(
        r.residual == 0.0,
        "a* = 0 is stationary in E: {}",
        r.residual
    );
    assert!((r.e_block.min - 0.5).abs() < 1e-8 && (r.e_block.max - 0.5).abs() < 1e-8);
    assert!(
        (r.perp_block.min - lam_perp).abs() < 1e-8,
        "{}",
        r.perp_block.min
    );
    assert_eq!(r.dim_perp, 1);
    assert_eq!(r.verdict, Verdict::UnstableOffE);
    let e = r.escape_min.unwrap();
    let p = e.predicted_factor.unwrap();
    assert!((p - (1.0 - e.eta * lam_perp)).abs() < 1e-7);
    let err = e.rate_relative_error.unwrap();
    eprintln!(
        "worked example: eta {}, predicted {p}, measured {}, rate error {err:e}",
        e.eta, e.measured_factor
    );
    assert!(err < 0.05, "rate error {err}");
    assert!(e.measured_factor > 1.0);
}

/// A tiny C_4 network (2 x 2 grid, invariant layer, softplus) with a planted
/// negative direction: as in the worked example, a sample that no equivariant model can fit
/// (`x2`, orthogonal to every invariant weight) with a target above the model's reach, plus
/// random samples. `A*` is found by L-BFGS on E; the escape along the Ritz vector of
/// `lambda_min(H_perp)` is measured against `1 - eta lambda_min`.
#[test]
fn tiny_network_escape_matches_prediction() {
    let g = Group::builtin("rot", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::Group {
                channels: 1,
                points: Points::Trivial,
                init_std: 0.3,
                constant_over_positions: false,
            },
            LayerSpec::Softplus,
        ],
    };
    let net = Network::<f64>::new(&spec, g, Rep::base(1), Loss::Mse).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut x = vec![0.5, 0.5, 0.5, 0.5, 1.0, -1.0, 1.0, -1.0];
    let mut t = vec![std::f64::consts::LN_2, 3.0];
    for _ in 0..4 {
        for _ in 0..4 {
            x.push(rng.gen_range(-0.3..0.3));
        }
        t.push(rng.gen_range(0.5..1.0));
    }
    let d = TrainData {
        x: Array2::from_shape_vec((6, 4), x).unwrap(),
        targets: Array2::from_shape_vec((6, 1), t).unwrap(),
        input_rep: Rep::base(1),
        target_rep: None,
    };
    let a0 = net.init_params(&mut rng);
    let opts = StabilityOptions {
        minibatch: 6,
        ..quick_options()
    };
    let (r, _) = stability::analyse(&net, &d, &a0, &opts).unwrap();
    eprintln!(
        "tiny: residual {:e} (start {:e}), E [{:e}, {:e}], perp [{:e}, {:e}] (residual {:e}), {:?}",
        r.residual,
        r.residual_start,
        r.e_block.min,
        r.e_block.max,
        r.perp_block.min,
        r.perp_block.max,
        r.perp_block.min_residual,
        r.verdict
    );
    assert!(r.converged, "{}", r.stop_reason);
    assert_eq!(r.verdict, Verdict::UnstableOffE);
    let e = r.escape_min.unwrap();
    eprintln!(
        "tiny: eta {}, predicted {:?}, measured {}, rate error {:?}",
        e.eta, e.predicted_factor, e.measured_factor, e.rate_relative_error
    );
    assert!(e.rate_relative_error.unwrap() < 0.05, "{e:?}");
    let rnd = r.escape_random.unwrap();
    let (lo, hi) = rnd.predicted_range.unwrap();
    eprintln!(
        "tiny: random direction {} in [{lo}, {hi}]",
        rnd.measured_factor
    );
    let tol = 0.05 * (lo - 1.0).abs().max((hi - 1.0).abs());
    assert!(
        rnd.measured_factor >= lo - tol && rnd.measured_factor <= hi + tol,
        "{rnd:?}"
    );
}

/// A tiny C_4 network with a ridge `mu`, its stationary point in E found by the Newton stage
/// (dense: whole Hessian on E; truncated CG when `dense_limit = 0`) from a few L-BFGS steps:
/// both meet a tolerance (1e-10 relative) that L-BFGS alone does not reach in the budget, as a
/// fresh gradient confirms, and the ridge adds exactly `mu v` to `H_perp v`.
#[test]
fn newton_stages_reach_a_tight_stationary_point_and_the_ridge_shifts_by_mu() {
    let g = Group::builtin("rot", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(2, Points::Base),
            LayerSpec::Tanh,
            group(2, Points::Trivial),
            dense(1, true),
            LayerSpec::Sigmoid,
        ],
    };
    let net = Network::<f64>::new(&spec, g, Rep::base(1), Loss::Bce).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let d = data(&net, 24, &mut rng);
    let a0 = net.init_params(&mut rng);
    let mu = 1e-2;
    let mut points = Vec::new();
    for dense_limit in [usize::MAX, 0] {
        let mut risk = Risk::new(&net, &d, 24, None).unwrap();
        risk.set_weight_decay(mu);
        let opts = stability::StationaryOptions {
            rtol: 1e-10,
            max_iterations: 5,
            newton_iterations: 60,
            dense_limit,
            ..Default::default()
        };
        let sp = stability::find_stationary_point(&mut risk, &a0, &opts).unwrap();
        eprintln!(
            "dense_limit {dense_limit}: {} L-BFGS + {} Newton iterations ({} HVPs), relative residual {:e}: {}",
            sp.iterations,
            sp.newton_iterations,
            sp.newton_hvps,
            sp.relative_residual(),
            sp.stop_reason
        );
        assert!(sp.converged, "{}", sp.stop_reason);
        assert!(sp.relative_residual() <= 1e-10);
        assert!(
            sp.newton_iterations > 0,
            "the Newton stage must do the work"
        );
        points.push(sp.params);
    }
    // Independently of the search's bookkeeping: a fresh risk's projected gradient at each
    // point, against the one at the start.
    let mut fresh = Risk::new(&net, &d, 24, None).unwrap();
    fresh.set_weight_decay(mu);
    let mut start = a0.clone();
    project_onto(&mut start, Subspace::Equivariant);
    let mut g0 = grad(&mut fresh, &start);
    project_onto(&mut g0, Subspace::Equivariant);
    for p in &points {
        let mut gp = grad(&mut fresh, p);
        project_onto(&mut gp, Subspace::Equivariant);
        assert!(
            gp.norm() <= 1e-10 * g0.norm(),
            "{:e}",
            gp.norm() / g0.norm()
        );
    }
    // The ridge adds mu to the Hessian: H(mu) v - H(0) v = mu v for v in E-perp.
    let a = &points[0];
    let elements = stability::augmentation_elements(net.group(), 100, 4, &mut rng)
        .unwrap()
        .0;
    let mut r0 = Risk::new(&net, &d, 24, Some(elements.clone())).unwrap();
    let mut r1 = Risk::new(&net, &d, 24, Some(elements)).unwrap();
    r1.set_weight_decay(mu);
    let mut v = a.zeros_like();
    for x in v.as_mut_slice() {
        *x = rng.gen_range(-1.0..1.0);
    }
    project_onto(&mut v, Subspace::Orthogonal);
    let (mut h0, mut h1) = (a.zeros_like(), a.zeros_like());
    r0.hvp(a, &v, &mut h0).unwrap();
    r1.hvp(a, &v, &mut h1).unwrap();
    h1.axpy(-1.0, &h0);
    h1.axpy(-mu, &v);
    let rel = h1.norm() / (mu * v.norm());
    eprintln!("ridge shift: relative error {rel:e}");
    assert!(rel < 1e-5, "{rel}");
}

/// An orthonormal basis of E (Gram-Schmidt over the projections of the unit vectors), as
/// dense columns: the oracle's own, independent of the orbit basis the analysis builds.
fn e_basis_by_projection(a: &Params<f64>) -> Vec<Vec<f64>> {
    basis_by_projection(a, Subspace::Equivariant)
}

/// [`e_basis_by_projection`] for either block.
fn basis_by_projection(a: &Params<f64>, sub: Subspace) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for j in 0..n {
        let mut e = a.zeros_like();
        e.as_mut_slice()[j] = 1.0;
        project_onto(&mut e, sub);
        let mut v = e.as_slice().to_vec();
        for _ in 0..2 {
            for b in &basis {
                let d: f64 = b.iter().zip(&v).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= d * y);
            }
        }
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if nv > 1e-8 {
            basis.push(v.into_iter().map(|x| x / nv).collect());
        }
    }
    basis
}

/// Where dim E is at most `dense_limit`, the E block is the whole spectrum of the Hessian on
/// E: every eigenvalue against the eigenvalues of `Q^T H Q`, with `H` the Richardson-
/// extrapolated dense Hessian of all parameters and `Q` an orthonormal basis of E by
/// Gram-Schmidt (both independent of the analysis' orbit basis and HVPs), at the stationary
/// point the analysis returns; its reported error (the central differences' asymmetry) is small.
#[test]
fn dense_e_spectrum_matches_the_projected_dense_hessian() {
    let g = Group::builtin("rot", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(2, Points::Base),
            LayerSpec::Tanh,
            group(2, Points::Trivial),
            dense(1, true),
            LayerSpec::Sigmoid,
        ],
    };
    let net = Network::<f64>::new(&spec, g, Rep::base(1), Loss::Bce).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let d = data(&net, 24, &mut rng);
    let a0 = net.init_params(&mut rng);
    let mu = 1e-2;
    let opts = StabilityOptions {
        minibatch: 24,
        weight_decay: mu,
        escape_steps: 0,
        ..quick_options()
    };
    let (r, a) = stability::analyse(&net, &d, &a0, &opts).unwrap();
    assert!(r.converged, "{}", r.stop_reason);
    assert!(r.e_block.dense, "dim E is small: the E block must be dense");
    let mut risk = Risk::new(&net, &d, 24, None).unwrap();
    risk.set_weight_decay(mu);
    let (h, _) = dense_hessian(&mut risk, &a);
    let q = e_basis_by_projection(&a);
    assert_eq!(q.len(), r.e_block.ritz_values.len(), "dim E");
    let oracle = projected_eigenvalues(&h, &q);
    let scale = oracle.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let worst = oracle
        .iter()
        .zip(&r.e_block.ritz_values)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f64, f64::max);
    eprintln!(
        "dense E block: dim E {}, eigenvalues in [{:e}, {:e}], worst difference {:e} of {:e}, asymmetry {:e}",
        q.len(),
        oracle[0],
        oracle[oracle.len() - 1],
        worst,
        scale,
        r.e_block.min_residual
    );
    assert!(worst <= 1e-6 * scale, "{worst:e}");
    assert!(r.e_block.min_residual <= 1e-6 * scale);
    // Every eigenvalue includes the ridge.
    assert!(r.e_block.min > 0.0);
}

/// The eigenvalues (ascending) of `Q^T H Q` for the orthonormal columns `q`.
fn projected_eigenvalues(h: &[Vec<f64>], q: &[Vec<f64>]) -> Vec<f64> {
    let hq: Vec<Vec<f64>> = q
        .iter()
        .map(|col| {
            h.iter()
                .map(|row| row.iter().zip(col).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    let he: Vec<Vec<f64>> = q
        .iter()
        .map(|qi| {
            hq.iter()
                .map(|hqj| qi.iter().zip(hqj).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    let (mut oracle, _) = eqaug_dynamics::lanczos::jacobi_eigen(he);
    oracle.sort_by(f64::total_cmp);
    oracle
}

/// With an exact group average and `dim E-perp <= perp_dense_limit`, `H_perp` is the whole
/// dense spectrum in the analysis' Helmert basis of E-perp: every eigenvalue against those of
/// `Q^T H_aug Q`, with `H_aug` the Richardson dense Hessian of the exactly averaged risk and
/// `Q` a Gram-Schmidt basis of E-perp from the projector (both independent of the analysis'
/// basis and HVPs); the escape along its lowest eigenvector matches `1 - eta lambda_min`.
#[test]
fn dense_perp_spectrum_matches_the_projected_dense_hessian() {
    let g = Group::builtin("rot", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(2, Points::Base),
            LayerSpec::Tanh,
            group(2, Points::Trivial),
            dense(1, true),
            LayerSpec::Sigmoid,
        ],
    };
    let net = Network::<f64>::new(&spec, g.clone(), Rep::base(1), Loss::Bce).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let d = data(&net, 24, &mut rng);
    let a0 = net.init_params(&mut rng);
    let mu = 1e-2;
    let opts = StabilityOptions {
        minibatch: 24,
        weight_decay: mu,
        perp_dense_limit: 1000,
        ..quick_options()
    };
    let (r, a) = stability::analyse(&net, &d, &a0, &opts).unwrap();
    assert!(r.converged, "{}", r.stop_reason);
    assert!(
        r.perp_exact && r.perp_block.dense,
        "H_perp must be the dense one"
    );
    let mut risk = Risk::new(&net, &d, 24, Some(g.elements(100).unwrap())).unwrap();
    risk.set_weight_decay(mu);
    let (h, _) = dense_hessian(&mut risk, &a);
    let q = basis_by_projection(&a, Subspace::Orthogonal);
    assert_eq!(q.len(), r.dim_perp, "dim E-perp");
    assert_eq!(
        q.len(),
        r.perp_block.ritz_values.len(),
        "one value per dimension"
    );
    let oracle = projected_eigenvalues(&h, &q);
    let scale = oracle.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let worst = oracle
        .iter()
        .zip(&r.perp_block.ritz_values)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f64, f64::max);
    eprintln!(
        "dense H_perp: dim {}, eigenvalues in [{:e}, {:e}], worst difference {:e} of {:e}, asymmetry {:e}",
        q.len(),
        oracle[0],
        oracle[oracle.len() - 1],
        worst,
        scale,
        r.perp_block.min_residual
    );
    assert!(worst <= 1e-6 * scale, "{worst:e}");
    let esc = r.escape_min.as_ref().expect("exact: escape run");
    let err = esc.rate_relative_error.unwrap();
    eprintln!(
        "escape: measured {} predicted {:?}, rate error {err:e}",
        esc.measured_factor, esc.predicted_factor
    );
    assert!(err < 1e-2, "{err}");
}

/// The held-out Rayleigh quotients are unbiased for the exact group average: for a fixed unit
/// `v` in E-perp, the mean of `v^T H_k v` over K = 400 samples of M = 1 element of C_4 lies
/// within 4 standard errors of `v^T H_perp v` with all four elements averaged; the spread is
/// real (single elements differ), and the nominal Hessian's quotient is not what is estimated.
#[test]
fn held_out_rayleigh_quotient_is_unbiased_for_the_exact_average() {
    let g = Group::builtin("rot", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(2, Points::Base),
            LayerSpec::Tanh,
            group(1, Points::Trivial),
        ],
    };
    let net = Network::<f64>::new(&spec, g.clone(), Rep::base(1), Loss::Mse).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let d = data(&net, 16, &mut rng);
    let mut a = net.init_params(&mut rng);
    project_onto(&mut a, Subspace::Equivariant);
    let mut v = a.zeros_like();
    for x in v.as_mut_slice() {
        *x = rng.gen_range(-1.0..1.0);
    }
    project_onto(&mut v, Subspace::Orthogonal);
    v.scale(1.0 / v.norm());
    let opts = StabilityOptions {
        minibatch: 16,
        sample_elements: 1,
        rayleigh_samples: 400,
        ..quick_options()
    };
    let (q, grads) = stability::held_out_rayleigh(&net, &d, &a, &v, &opts, &mut rng).unwrap();
    let q = q.unwrap();
    // exact HVPs (the default) take no gradient; central differences would take 2 x 400
    assert_eq!(grads, 0);
    let quotient = |elements: Option<Vec<eqaug_groups::Perm>>| {
        let mut r = Risk::new(&net, &d, 16, elements).unwrap();
        let mut hv = a.zeros_like();
        r.hvp(&a, &v, &mut hv).unwrap();
        v.dot(&hv)
    };
    let exact = quotient(Some(g.elements(100).unwrap()));
    let nominal = quotient(None);
    eprintln!(
        "held-out Rayleigh: {} +- {} (K = 400, M = 1); exact {exact}; nominal {nominal}",
        q.mean, q.standard_error
    );
    assert!(q.standard_error > 0.0);
    assert!(
        (q.mean - exact).abs() <= 4.0 * q.standard_error,
        "{} +- {} vs exact {exact}",
        q.mean,
        q.standard_error
    );
    assert!(
        (nominal - exact).abs() > 8.0 * q.standard_error,
        "the test cannot tell the nominal from the exact quotient: {nominal} vs {exact}"
    );
}

/// The augmented risk stacks several elements' whole mini-batches into one pass: its value and
/// gradient equal the mean over the elements of the nominal risk on the data each element
/// transforms (built here sample by sample), with batch norm (statistics per mini-batch of
/// one element) and per-position batch norm; both when the stacking applies (16 samples,
/// mini-batch 4) and when it does not (14 samples: a partial mini-batch per element).
#[test]
fn augmented_risk_is_the_mean_of_the_transformed_nominal_risks() {
    let g = Group::builtin("rot", 3).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(2, Points::Base),
            LayerSpec::BatchNorm {
                over: NormOver::Channels,
            },
            LayerSpec::Tanh,
            group(3, Points::Trivial),
            LayerSpec::BatchNorm {
                over: NormOver::Features,
            },
            dense(2, true),
        ],
    };
    let net = Network::<f64>::new(&spec, g.clone(), Rep::base(1), Loss::Mse).unwrap();
    for n in [16, 14] {
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let d = data(&net, n, &mut rng);
        let a = generic_point(&net, &mut rng);
        let elements = g.elements(100).unwrap();
        let mut aug = Risk::new(&net, &d, 4, Some(elements.clone())).unwrap();
        let mut ga = a.zeros_like();
        let la = aug.loss_and_gradient(&a, &mut ga).unwrap();
        let mut lo = 0.0;
        let mut go = a.zeros_like();
        for e in &elements {
            let mut x = d.x.clone();
            for (i, mut row) in x.rows_mut().into_iter().enumerate() {
                let src = d.x.row(i).to_vec();
                eqaug_groups::act_on_sample(e, &src, row.as_slice_mut().unwrap());
            }
            let de = TrainData {
                x,
                targets: d.targets.clone(),
                input_rep: d.input_rep,
                target_rep: None,
            };
            let mut r = Risk::new(&net, &de, 4, None).unwrap();
            let mut gr = a.zeros_like();
            lo += r.loss_and_gradient(&a, &mut gr).unwrap() / elements.len() as f64;
            go.axpy(1.0 / elements.len() as f64, &gr);
        }
        let mut diff = ga.clone();
        diff.axpy(-1.0, &go);
        eprintln!(
            "n = {n}: loss {la} vs {lo}, gradient difference {:e} of {:e}",
            diff.norm(),
            go.norm()
        );
        assert!((la - lo).abs() <= 1e-12 * lo.abs(), "n = {n}: {la} vs {lo}");
        assert!(diff.norm() <= 1e-12 * go.norm(), "n = {n}");
        // Not a vacuous comparison: the nominal risk differs.
        let mut nominal = Risk::new(&net, &d, 4, None).unwrap();
        let ln = nominal.loss(&a).unwrap();
        assert!((ln - lo).abs() > 1e-6 * lo.abs(), "n = {n}: {ln} vs {lo}");
    }
}

/// At a stable point the perturbation decays at the predicted rate: a linear C_4-invariant
/// model on a 2 x 2 grid (one group layer to an invariant output, MSE, a ridge) has a quadratic
/// risk whose exact H_perp is positive definite; the search reaches its minimum in E, the
/// verdict is `Stable`, and exact-average augmented GD from A* + delta v shrinks ||A_Eperp|| by
/// 1 - eta lambda_min per step (a random direction within the bracket of both extremes).
#[test]
fn stable_point_perturbation_decays_at_the_predicted_rate() {
    let g = Group::builtin("rot", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![group(1, Points::Trivial)],
    };
    let net = Network::<f64>::new(&spec, g, Rep::base(1), Loss::Mse).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let d = data(&net, 12, &mut rng);
    let a0 = net.init_params(&mut rng);
    let opts = StabilityOptions {
        minibatch: 12,
        weight_decay: 1e-2,
        escape_steps: 40,
        ..quick_options()
    };
    let (r, _) = stability::analyse(&net, &d, &a0, &opts).unwrap();
    eprintln!(
        "linear: residual {:e}, E [{:e}, {:e}], perp [{:e}, {:e}] (+- {:e}), {:?}",
        r.residual,
        r.e_block.min,
        r.e_block.max,
        r.perp_block.min,
        r.perp_block.max,
        r.perp_block.min_residual,
        r.verdict
    );
    assert!(r.converged, "{}", r.stop_reason);
    assert_eq!(r.verdict, Verdict::Stable);
    assert!(r.perp_block.min > 1e-2, "the ridge alone gives 1e-2");
    let e = r.escape_min.unwrap();
    let p = e.predicted_factor.unwrap();
    eprintln!(
        "linear: eta {}, predicted {p}, measured {}, rate error {:?}",
        e.eta, e.measured_factor, e.rate_relative_error
    );
    assert!(p < 1.0 && e.measured_factor < 1.0, "a decay: {e:?}");
    assert!(e.rate_relative_error.unwrap() < 1e-3, "{e:?}");
    let rnd = r.escape_random.unwrap();
    let (lo, hi) = rnd.predicted_range.unwrap();
    assert!(
        rnd.measured_factor >= lo - 1e-9 && rnd.measured_factor <= hi + 1e-9,
        "{} not in [{lo}, {hi}]",
        rnd.measured_factor
    );
}

/// A dense H_perp that cannot fit is refused before any work, naming the config key: a
/// 784 x 784 C_4 layer on 28 x 28 images has dim E-perp ~ 4.6e5, and five such dense matrices
/// need ~8.5e15 bytes.
#[test]
fn dense_perp_beyond_memory_is_refused_naming_the_key() {
    let g = Group::builtin("rot", 28).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            group(1, Points::Base),
            LayerSpec::Tanh,
            group(1, Points::Trivial),
            LayerSpec::Sigmoid,
        ],
    };
    let net = Network::<f64>::new(&spec, g, Rep::base(1), Loss::Bce).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let d = data(&net, 2, &mut rng);
    let a0 = net.init_params(&mut rng);
    let opts = StabilityOptions {
        minibatch: 2,
        perp_dense_limit: usize::MAX,
        ..quick_options()
    };
    let err = stability::analyse(&net, &d, &a0, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("stability.perp_dense_limit"), "{msg}");
}

/// Per-sample draws (issue 15). (1) Without batch statistics the loss is a sum over samples,
/// so the mean over the |G| columns of a Latin design (row `i` of column `k` gets element
/// `(i + k) mod |G|`: every row sees every element once) is exactly the per-batch average
/// over all elements: equal values, gradients and Hessian-vector products. (2) With batch norm
/// over the whole batch the statistics mix the rows' transformations and the same design
/// differs from the per-batch average off E, while (3) on E (an equivariant point, where the
/// statistics do not see per-row permutations of positions) both give the same risk.
#[test]
fn per_sample_draws_average_to_the_per_batch_risk_without_batch_statistics() {
    let g = Group::builtin("rot", 2).unwrap();
    let elements = g.elements(100).unwrap();
    let latin = |n: usize| -> Vec<Vec<usize>> {
        (0..elements.len())
            .map(|k| (0..n).map(|i| (i + k) % elements.len()).collect())
            .collect()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    for (bn, name) in [(false, "tanh, no batch statistics"), (true, "batch norm")] {
        let mut layers = vec![group(2, Points::Base), LayerSpec::Tanh];
        if bn {
            layers.push(LayerSpec::BatchNorm {
                over: NormOver::Channels,
            });
        }
        layers.push(group(1, Points::Trivial));
        let spec = NetworkSpec { layers };
        let net = Network::<f64>::new(&spec, g.clone(), Rep::base(1), Loss::Mse).unwrap();
        let d = data(&net, 12, &mut rng);
        let a = generic_point(&net, &mut rng);
        let mut a_e = a.clone();
        project_onto(&mut a_e, Subspace::Equivariant);
        let mut per_batch = Risk::new(&net, &d, 12, Some(elements.clone())).unwrap();
        let mut per_sample =
            Risk::new_per_sample(&net, &d, 12, elements.clone(), latin(12)).unwrap();
        let (mut g1, mut g2) = (a.zeros_like(), a.zeros_like());
        let l1 = per_batch.loss_and_gradient(&a, &mut g1).unwrap();
        let l2 = per_sample.loss_and_gradient(&a, &mut g2).unwrap();
        let mut v = a.zeros_like();
        for x in v.as_mut_slice() {
            *x = rng.gen_range(-1.0..1.0);
        }
        let (mut h1, mut h2) = (a.zeros_like(), a.zeros_like());
        per_batch.hvp(&a, &v, &mut h1).unwrap();
        per_sample.hvp(&a, &v, &mut h2).unwrap();
        let on_e = (per_batch.loss(&a_e).unwrap() - per_sample.loss(&a_e).unwrap()).abs();
        let (dl, dg, dh) = (
            (l1 - l2).abs() / l1.abs(),
            g1.distance(&g2) / g1.norm(),
            h1.distance(&h2) / h1.norm(),
        );
        eprintln!(
            "{name}: relative differences loss {dl:e}, gradient {dg:e}, HVP {dh:e}; on E {on_e:e}"
        );
        assert!(on_e <= 1e-12 * l1.abs(), "{name}: on E {on_e:e}");
        if bn {
            assert!(dl > 1e-6 && dg > 1e-6, "{name}: batch statistics must mix");
        } else {
            assert!(dl < 1e-12 && dg < 1e-12 && dh < 1e-6, "{name}");
        }
    }
}
