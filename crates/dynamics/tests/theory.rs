//! The paper's theory checked numerically (docs/science.md §1.3): Proposition 1, Corollary 1, the
//! worked example, and the determinism and robustness of the protocol.

mod common;

use common::{protocol, Case};
use eqaug_dynamics::hessian::{self, Subspace};
use eqaug_dynamics::{
    equivariance_error, train, worked_example, Sampling, StrategySpec, TrainData, Trainer,
};
use eqaug_groups::{Group, Rep};
use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, NormOver, Params, Points};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A small invariant classifier: rho -> rho -> trivial, batch norm, dense head, softmax.
fn invariant_net() -> NetworkSpec {
    NetworkSpec {
        layers: vec![
            LayerSpec::group(3, Points::Base, 0.5),
            LayerSpec::LeakyRelu { slope: 0.1 },
            LayerSpec::group(4, Points::Trivial, 0.5),
            LayerSpec::Tanh,
            LayerSpec::BatchNorm {
                over: NormOver::Features,
            },
            LayerSpec::dense(3, 0.7, true),
            LayerSpec::Softmax,
        ],
    }
}

/// A small equivariant segmenter: rho -> rho -> rho, batch norm per channel, sigmoid.
fn equivariant_net() -> NetworkSpec {
    NetworkSpec {
        layers: vec![
            LayerSpec::group(3, Points::Base, 0.5),
            LayerSpec::LeakyRelu { slope: 0.1 },
            LayerSpec::group(2, Points::Base, 0.5),
            LayerSpec::BatchNorm {
                over: NormOver::Channels,
            },
            LayerSpec::Sigmoid,
        ],
    }
}

fn case(group: Arc<Group>, equivariant_task: bool, rows: usize, seed: u64) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = group.degree();
    let (spec, loss) = if equivariant_task {
        (equivariant_net(), Loss::SegmentationBce)
    } else {
        (invariant_net(), Loss::CrossEntropyOnProbabilities)
    };
    let net = Network::new(&spec, group.clone(), Rep::base(1), loss).unwrap();
    let x = Array2::from_shape_fn((rows, d), |_| rng.gen_range(-1.0..1.0));
    let targets = if equivariant_task {
        Array2::from_shape_fn((rows, 2 * d), |_| if rng.gen_bool(0.3) { 1.0 } else { 0.0 })
    } else {
        let mut t = Array2::zeros((rows, 3));
        for i in 0..rows {
            t[[i, rng.gen_range(0..3)]] = 1.0;
        }
        t
    };
    let data = TrainData {
        x,
        targets,
        input_rep: Rep::base(1),
        target_rep: equivariant_task.then_some(Rep::base(2)),
    };
    Case { net, group, data }
}

/// Random parameters in E: the network's init (group layers projected), with the norm and
/// dense parameters perturbed so that nothing is at a special value.
fn random_params_in_e(net: &Network<f64>, seed: u64) -> Params<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = net.init_params(&mut rng);
    for v in p.as_mut_slice() {
        *v += rng.gen_range(-0.2..0.2);
    }
    p.project_group_layers();
    p
}

fn rel_err(a: &Params<f64>, b: &Params<f64>) -> f64 {
    a.distance(b) / b.norm().max(1e-300)
}

#[test]
fn proposition_1_exact_augmented_gradient_is_projected_nominal_gradient() {
    let groups = [
        Group::builtin("perm", 4).unwrap(),
        Group::builtin("trans2d", 4).unwrap(),
        Group::builtin("trans1d", 4).unwrap(),
        Group::builtin("rot", 4).unwrap(),
        Group::builtin("rot", 5).unwrap(),
        Group::builtin("rototrans", 3).unwrap(),
        Group::builtin("swap", 2).unwrap(),
    ];
    for group in groups {
        for equivariant_task in [false, true] {
            let c = case(group.clone(), equivariant_task, 12, 1);
            let mut t = Trainer::new(&c.net, &c.data, protocol(1, 0.1, 4)).unwrap();
            let a = random_params_in_e(&c.net, 2);
            let aug = hessian::gradient(&mut t, &a, &StrategySpec::augmented(1, Sampling::Exact))
                .unwrap();
            let eqv = hessian::gradient(&mut t, &a, &StrategySpec::equivariant()).unwrap();
            let nom = hessian::gradient(&mut t, &a, &StrategySpec::nominal()).unwrap();
            let err = rel_err(&aug, &eqv);
            assert!(
                err <= 1e-10,
                "{} (equivariant task: {equivariant_task}): relative error {err:e}",
                group.name()
            );
            // The nominal gradient itself is not in E (otherwise the test would be vacuous).
            if group.order() > 1 {
                assert!(
                    nom.distance_to_equivariant() > 1e-6 * nom.norm(),
                    "{}: nominal gradient already in E",
                    group.name()
                );
            }
        }
    }
}

#[test]
fn corollary_1_exact_augmentation_stays_in_e_and_the_others_behave_as_expected() {
    let c = case(Group::builtin("rot", 4).unwrap(), true, 16, 3);
    let a0 = c.net.init_params(&mut ChaCha8Rng::seed_from_u64(4));
    assert!(a0.distance_to_equivariant() < 1e-14);
    let strategies = [
        StrategySpec::nominal(),
        StrategySpec::equivariant(),
        StrategySpec::augmented(3, Sampling::PerBatch),
        StrategySpec::augmented(1, Sampling::Exact),
    ];
    let out = train(
        &c.net,
        &c.data,
        &protocol(20, 0.5, 4),
        &strategies,
        &a0,
        5,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(out.failures.is_empty());
    let last = |name: &str| {
        out.metrics
            .iter()
            .rfind(|m| m.strategy == name)
            .unwrap()
            .clone()
    };
    for s in &strategies {
        let rows: Vec<_> = out
            .metrics
            .iter()
            .filter(|m| m.strategy == s.name)
            .collect();
        assert_eq!(rows.len(), 21, "{}: epochs 0..=20", s.name);
        assert_eq!(rows[0].dist_from_start, 0.0);
    }
    let ratio = |name: &str| {
        let m = last(name);
        assert!(
            m.dist_from_start > 1e-3,
            "{name} did not move: {}",
            m.dist_from_start
        );
        m.dist_to_e / m.dist_from_start
    };
    let exact = ratio("augmented-exact");
    assert!(exact < 1e-10, "exact augmentation left E: ratio {exact:e}");
    let eqv = ratio("equivariant");
    assert!(eqv < 1e-12, "equivariant training left E: ratio {eqv:e}");
    let sampled = ratio("augmented");
    assert!(
        sampled > 1e-6,
        "sampled augmentation stayed in E: ratio {sampled:e}"
    );
    let nominal = ratio("nominal");
    assert!(
        nominal > 1e-3,
        "nominal training stayed in E: ratio {nominal:e}"
    );
    // Corollary 1: started in E, exact augmented training *is* equivariant training.
    let (e, q) = (last("augmented-exact"), last("equivariant"));
    assert!((e.loss - q.loss).abs() < 1e-10 * q.loss.abs());
    assert!((e.dist_from_start - q.dist_from_start).abs() < 1e-10 * q.dist_from_start);
}

#[test]
fn worked_example_of_section_1() {
    let w = worked_example::run().unwrap();
    assert!(
        w.grad_aug_at_zero.iter().all(|g| g.abs() < 1e-12),
        "{:?}",
        w.grad_aug_at_zero
    );
    let ln2 = std::f64::consts::LN_2;
    assert!((w.grad_nominal_at_zero[0] - (ln2 - 2.0) / 4.0).abs() < 1e-12);
    assert!((w.grad_nominal_at_zero[1] + (ln2 - 2.0) / 4.0).abs() < 1e-12);
    assert!((w.eigenvalue_e - 0.25).abs() < 1e-6, "{}", w.eigenvalue_e);
    assert!(
        (w.eigenvalue_perp - (ln2 - 1.0) / 4.0).abs() < 1e-6,
        "{}",
        w.eigenvalue_perp
    );
    // The Hessian is block diagonal on E + E-perp (Proposition 2).
    let h = w.hessian_aug;
    assert!((h[0][0] - h[1][1]).abs() < 1e-6 && (h[0][1] - h[1][0]).abs() < 1e-6);
    assert!(
        (w.escape_point[0] - 0.6209).abs() < 1e-3,
        "{:?}",
        w.escape_point
    );
    assert!(
        (w.escape_point[1] + 0.6209).abs() < 1e-3,
        "{:?}",
        w.escape_point
    );
    assert!((w.r_aug_start - 0.426966).abs() < 1e-6, "{}", w.r_aug_start);
    assert!((w.r_aug_end - 0.412976).abs() < 1e-6, "{}", w.r_aug_end);
    // Growth like exp(0.0767 t) from 1e-6 * 2 to 0.1 takes about ln(5e4)/0.0767 = 141.
    assert!((100.0..200.0).contains(&w.escape_time), "{}", w.escape_time);
}

#[test]
fn lanczos_finds_the_negative_curvature_off_e() {
    // The worked example again, through the generic Lanczos path on E-perp and E.
    let group = Group::builtin("swap", 2).unwrap();
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::group(1, Points::Trivial, 0.0),
            LayerSpec::Softplus,
        ],
    };
    let net = Network::<f64>::new(&spec, group.clone(), Rep::base(1), Loss::Mse).unwrap();
    let data = TrainData {
        x: ndarray::array![[1.0, 1.0], [1.0, -1.0]],
        targets: ndarray::array![[std::f64::consts::LN_2], [2.0]],
        input_rep: Rep::base(1),
        target_rep: None,
    };
    let mut t = Trainer::new(&net, &data, protocol(1, 0.1, 2)).unwrap();
    let zero = net.zeros();
    let mut start = net.zeros();
    start.as_mut_slice().copy_from_slice(&[0.3, 0.7]);
    let aug = StrategySpec::augmented(1, Sampling::Exact);
    // The network's MSE is twice the example's risk: eigenvalues (ln 2 - 1)/2 and 1/2.
    let (lo, hi) =
        common::extreme_eigenvalues(&mut t, &zero, &aug, &start, Subspace::Orthogonal, 4);
    let expect = (std::f64::consts::LN_2 - 1.0) / 2.0;
    assert!(
        (lo - expect).abs() < 1e-6 && (hi - expect).abs() < 1e-6,
        "{lo} {hi}"
    );
    let (lo, _) =
        common::extreme_eigenvalues(&mut t, &zero, &aug, &start, Subspace::Equivariant, 4);
    assert!((lo - 0.5).abs() < 1e-6, "{lo}");
}

fn run_metrics(seed: u64) -> Vec<eqaug_dynamics::EpochMetrics> {
    let c = case(Group::builtin("trans2d", 4).unwrap(), false, 24, 6);
    let a0 = c.net.init_params(&mut ChaCha8Rng::seed_from_u64(seed));
    let strategies = [
        StrategySpec::nominal(),
        StrategySpec::augmented(2, Sampling::PerBatch),
        StrategySpec::augmented(2, Sampling::PerSample),
        StrategySpec::augmented(2, Sampling::Reference),
        StrategySpec::equivariant(),
    ];
    train(
        &c.net,
        &c.data,
        &protocol(4, 0.3, 4),
        &strategies,
        &a0,
        seed,
        &mut |_, _| {},
    )
    .unwrap()
    .metrics
}

#[test]
fn same_seed_same_metrics_bit_for_bit_with_rayon() {
    let a = run_metrics(11);
    let (b, c) = rayon::join(|| run_metrics(11), || run_metrics(11));
    assert_eq!(a, b);
    assert_eq!(a, c);
    let d = run_metrics(12);
    assert_ne!(a, d, "a different seed should change the metrics");
}

#[test]
fn divergence_stops_the_strategy_and_keeps_its_metrics() {
    let c = case(Group::builtin("rot", 4).unwrap(), true, 8, 7);
    let a0 = c.net.init_params(&mut ChaCha8Rng::seed_from_u64(8));
    let out = train(
        &c.net,
        &c.data,
        &protocol(5, 1e306, 4),
        &[StrategySpec::nominal(), StrategySpec::equivariant()],
        &a0,
        9,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(out.failures.len(), 2, "{:?}", out.failures);
    for f in &out.failures {
        assert!(f.epoch >= 1 && f.epoch <= 5, "{f:?}");
        assert!(
            f.error.contains(&format!("epoch {}", f.epoch)),
            "{}",
            f.error
        );
        let rows = out
            .metrics
            .iter()
            .filter(|m| m.strategy == f.strategy)
            .count();
        assert!(rows >= 1, "metrics before the divergence are kept");
    }
}

#[test]
fn equivariance_error_is_round_off_in_e_and_visible_off_e() {
    let c = case(Group::builtin("rot", 5).unwrap(), true, 8, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut a = c.net.init_params(&mut rng);
    let e = equivariance_error(&c.net, &a, c.data.x.view(), 4, 4, &mut rng).unwrap();
    assert!(e.max < 1e-12, "{e:?}");
    a.as_mut_slice()[0] += 0.5; // push the first group layer off E
    let e = equivariance_error(&c.net, &a, c.data.x.view(), 4, 4, &mut rng).unwrap();
    assert!(e.max > 1e-4, "{e:?}");
}
