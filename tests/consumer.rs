//! A consumer's test: eqaug-groups, eqaug-nn and eqaug-dynamics used only through their public
//! APIs, as a project depending on them would (no harness, no workspace internals): one
//! argument order, errors instead of panics for arguments that do not fit, readable messages,
//! the zero-or-accumulate choice for gradients, the protocol builder, the group taken from the
//! network, and the re-exported `ndarray` / `rand` versions.

use eqaug_dynamics::rand_chacha::ChaCha8Rng;
use eqaug_dynamics::{train, Protocol, Sampling, StrategySpec, TrainData, TrainError, Trainer};
use eqaug_groups::{Group, GroupError, Points, Projector, Rep};
use eqaug_nn::ndarray::Array2;
use eqaug_nn::rand::{Rng, SeedableRng};
use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, NnError};

/// S_n on n points, an equivariant layer, an invariant layer and a dense head with a sigmoid.
fn set_network(n: usize) -> Network<f64> {
    let group = Group::builtin("sym", n).unwrap();
    let layer = |channels, points| LayerSpec::Group {
        channels,
        points,
        init_std: 0.5,
        constant_over_positions: false,
    };
    let spec = NetworkSpec {
        layers: vec![
            layer(3, Points::Base),
            LayerSpec::Tanh,
            layer(2, Points::Trivial),
            LayerSpec::Dense {
                out: 1,
                init_scale: 0.5,
                bias: true,
            },
            LayerSpec::Sigmoid,
        ],
    };
    Network::new(&spec, group, Rep::base(1), Loss::Bce).unwrap()
}

fn set_data(n: usize, samples: usize, rng: &mut ChaCha8Rng) -> TrainData<f64> {
    let x = Array2::from_shape_fn((samples, n), |_| rng.gen_range(-1.0..1.0));
    let targets = Array2::from_shape_fn((samples, 1), |(i, _)| {
        f64::from(u8::from(x.row(i).sum() > 0.0))
    });
    TrainData {
        x,
        targets,
        input_rep: Rep::base(1),
        target_rep: None,
    }
}

#[test]
fn projector_takes_input_then_output_and_reports_wrong_lengths() {
    let g = Group::builtin("sym", 4).unwrap();
    let p = Projector::between(&g, Rep::base(3), Rep::trivial(2)).unwrap();
    // input first: 3 channels on 4 points in, 2 invariant features out
    assert_eq!((p.rep_in(), p.rep_out()), (Rep::base(3), Rep::trivial(2)));
    assert_eq!((p.rows(), p.cols()), (2, 12));
    assert_eq!(p.dim(), 2 * 3); // one orbit of (fixed point, point) pairs per channel pair
    let w = vec![1.0f64; p.len() + 1];
    let e = p.project(&w).unwrap_err();
    assert!(
        matches!(e, GroupError::ShapeMismatch { got: 25, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "weight of length 25 does not match the layer shape 2 x 12 (length 24)"
    );
    assert!(p.distance_to_equivariant(&w[..3]).is_err());
    // a group element of another group is an error too
    let other = Group::builtin("sym", 5).unwrap();
    let mut out = vec![0.0; p.len()];
    let e = p
        .act_on_layer(
            &other.sample(&mut ChaCha8Rng::seed_from_u64(0)),
            &w[..24],
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the group element permutes 5 points, but the layer's positions are 4"
    );
}

#[test]
fn errors_print_readably() {
    let g = Group::builtin("sym", 3).unwrap();
    let e = Projector::between(&g, Rep::base(0), Rep::base(2)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("from 0 channels on base points to 2 channels on base points"),
        "{msg}"
    );
    assert!(
        !msg.contains("Rep {") && !msg.contains("Base"),
        "Debug formatting leaked: {msg}"
    );
    assert_eq!(Rep::trivial(1).to_string(), "1 channel on a fixed point");
    assert_eq!(Points::Base.to_string(), "base points");
}

#[test]
fn network_calls_return_errors_for_arguments_that_do_not_fit() {
    let net = set_network(4);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let params = net.init_params(&mut rng);
    let (mut grads, mut ws) = (net.zeros(), net.workspace(8));
    let x = Array2::<f64>::zeros((8, 5)); // 5 features, the network takes 4
    let t = Array2::<f64>::zeros((8, 1));
    let e = net
        .loss_and_grad(&params, x.view(), t.view(), 4, &mut grads, &mut ws)
        .unwrap_err();
    assert!(matches!(e, NnError::Input { argument: "x", .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "argument `x` does not fit the network: expected rows of 4 features, got 8 x 5"
    );
    let x = Array2::<f64>::zeros((8, 4));
    let e = net.forward(&params, x.view(), 0, &mut ws).unwrap_err();
    assert!(
        matches!(
            e,
            NnError::Input {
                argument: "minibatch",
                ..
            }
        ),
        "{e}"
    );
    let bad_t = Array2::<f64>::zeros((7, 1));
    let e = net
        .loss(&params, x.view(), bad_t.view(), 4, &mut ws)
        .unwrap_err();
    assert!(
        matches!(
            e,
            NnError::Input {
                argument: "targets",
                ..
            }
        ),
        "{e}"
    );
    // parameters of another network
    let other = set_network(5).init_params(&mut rng);
    let e = net.forward(&other, x.view(), 4, &mut ws).unwrap_err();
    assert!(
        matches!(
            e,
            NnError::Input {
                argument: "params",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn loss_and_grad_overwrites_and_accumulate_adds() {
    let net = set_network(4);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let params = net.init_params(&mut rng);
    let data = set_data(4, 12, &mut rng);
    let (x, t) = (data.x.view(), data.targets.view());
    let mut ws = net.workspace(12);
    let mut g = net.zeros();
    let l1 = net
        .loss_and_grad(&params, x, t, 4, &mut g, &mut ws)
        .unwrap();
    let once = g.clone();
    // calling it again in a loop, without zeroing, gives the same gradient
    let l2 = net
        .loss_and_grad(&params, x, t, 4, &mut g, &mut ws)
        .unwrap();
    assert_eq!((l1, g.as_slice()), (l2, once.as_slice()));
    // accumulate adds: twice the gradient (up to the rounding of the GEMM's accumulation)
    net.accumulate_loss_and_grad(&params, x, t, 4, &mut g, &mut ws)
        .unwrap();
    for (a, b) in g.as_slice().iter().zip(once.as_slice()) {
        assert!(
            (a - 2.0 * b).abs() <= 1e-14 * b.abs().max(1e-300),
            "{a} vs 2 x {b}"
        );
    }
    // summing two halves with accumulate gives the full-batch gradient (mini-batches of 4)
    let mut halves = net.zeros();
    let mut l = 0.0;
    for rows in [0..8, 8..12] {
        l += net
            .accumulate_loss_and_grad(
                &params,
                data.x.slice(eqaug_nn::ndarray::s![rows.clone(), ..]),
                data.targets.slice(eqaug_nn::ndarray::s![rows, ..]),
                4,
                &mut halves,
                &mut ws,
            )
            .unwrap();
    }
    assert!((l - l1).abs() < 1e-12 * l1.abs());
    let diff: f64 = halves
        .as_slice()
        .iter()
        .zip(once.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-12, "{diff}");
}

#[test]
fn training_uses_the_networks_group_and_checks_the_data() {
    let net = set_network(5);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let data = set_data(5, 32, &mut rng);
    let protocol = Protocol::default()
        .with_epochs(5)
        .with_learning_rate(0.5)
        .with_minibatch(8)
        .with_chunk_rows(32);
    let strategies = [
        StrategySpec::nominal(),
        StrategySpec::augmented(2, Sampling::PerBatch),
        StrategySpec::augmented(1, Sampling::Exact), // one pass per element of S_5
        StrategySpec::equivariant(),
    ];
    let a0 = net.init_params(&mut rng);
    let out = train(&net, &data, &protocol, &strategies, &a0, 9, &mut |_, _| {}).unwrap();
    assert_eq!(out.metrics.len(), strategies.len() * 6);
    assert!(out.failures.is_empty());
    let last = |name: &str| out.metrics.iter().rfind(|m| m.strategy == name).unwrap();
    assert!(last("equivariant").dist_to_e < 1e-12);
    // S_5 acts on the inputs: the exact average is an invariant risk, so exact augmentation
    // from A0 in E stays in E (docs/science.md §1.2)
    assert!(last("augmented-exact").dist_to_e < 1e-10);
    assert!(last("nominal").dist_to_e > 1e-6);

    // data of another representation or width are refused with a message saying so
    let mut wrong = data.clone();
    wrong.input_rep = Rep::trivial(5);
    let e = Trainer::new(&net, &wrong, protocol.clone()).unwrap_err();
    assert!(matches!(e, TrainError::Invalid(_)));
    assert_eq!(
        e.to_string(),
        "invalid training set-up: the data's input representation (5 channels on a fixed \
         point) is not the network's (1 channel on base points)"
    );
    let e = Trainer::new(&net, &data, protocol.clone().with_minibatch(0)).unwrap_err();
    assert!(
        e.to_string().contains("`minibatch` must be at least 1"),
        "{e}"
    );
    // a0 of another network
    let other = set_network(4).init_params(&mut rng);
    let e = train(
        &net,
        &data,
        &protocol,
        &strategies,
        &other,
        9,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("`a0` is not laid out for this network"),
        "{e}"
    );
}
