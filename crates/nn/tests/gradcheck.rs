//! Finite-difference gradient checks (f64, central differences, relative error <= 1e-6) for
//! every layer type, every loss, both normalisations, and whole E1/E2/E3 networks.

mod common;

use common::*;
use eqaug_nn::{
    Group, LayerSpec, Loss, Network, NetworkSpec, NormOver, Normalisation, Points, Rep,
};

const TOL: f64 = 1e-6;

/// Dense(bias) -> `mid` -> Dense(bias) -> `tail`, on a trivial input of 4 features.
fn check_dense_stack(mid: Vec<LayerSpec>, tail: Vec<LayerSpec>, out: usize, loss: Loss, seed: u64) {
    let (spec, net) = dense_stack(4, 6, mid, tail, out, loss);
    let mut r = rng(seed);
    let mut p = net.init_params(&mut r);
    perturb(&mut p, &mut r, 0.3);
    let x = gaussian(&mut r, 10, 4, 1.0);
    let t = targets(&mut r, loss, 10, out);
    // mini-batches of 4, 4, 2
    let err = grad_check(&net, &p, &x, &t, 4);
    assert!(err <= TOL, "{spec:?} {loss:?}: relative error {err:e}");
}

#[test]
fn pointwise_layers() {
    for (i, layer) in [
        LayerSpec::LeakyRelu { slope: 0.1 },
        LayerSpec::Tanh,
        LayerSpec::Sigmoid,
        LayerSpec::Softplus,
        LayerSpec::Softmax,
    ]
    .into_iter()
    .enumerate()
    {
        check_dense_stack(vec![layer], vec![], 3, Loss::Mse, 10 + i as u64);
    }
}

#[test]
fn normalisation_over_features() {
    for (i, layer) in [
        LayerSpec::BatchNorm {
            over: NormOver::Features,
        },
        LayerSpec::LayerNorm {
            over: NormOver::Features,
        },
    ]
    .into_iter()
    .enumerate()
    {
        check_dense_stack(
            vec![LayerSpec::Tanh, layer],
            vec![],
            3,
            Loss::Mse,
            20 + i as u64,
        );
    }
}

#[test]
fn every_loss() {
    check_dense_stack(vec![LayerSpec::Tanh], vec![], 3, Loss::Mse, 30);
    check_dense_stack(
        vec![LayerSpec::Tanh],
        vec![LayerSpec::Sigmoid],
        2,
        Loss::Bce,
        31,
    );
    check_dense_stack(
        vec![LayerSpec::Tanh],
        vec![],
        4,
        Loss::CrossEntropyLogits,
        32,
    );
    check_dense_stack(
        vec![LayerSpec::Tanh],
        vec![LayerSpec::Softmax],
        4,
        Loss::CrossEntropyOnProbabilities,
        33,
    );
    check_dense_stack(
        vec![LayerSpec::Tanh],
        vec![LayerSpec::Sigmoid],
        3,
        Loss::SegmentationBce,
        34,
    );
}

fn check_group_net(spec: NetworkSpec, group: &str, n: usize, input: Rep, loss: Loss, seed: u64) {
    let group = Group::builtin(group, n).unwrap();
    let net = Network::<f64>::new(&spec, group, input, loss).unwrap();
    let mut r = rng(seed);
    let mut p = net.init_params(&mut r);
    perturb(&mut p, &mut r, 0.2);
    let x = gaussian(&mut r, 9, net.input_width(), 1.0);
    let t = targets(&mut r, loss, 9, net.output_width());
    let err = grad_check(&net, &p, &x, &t, 4);
    assert!(err <= TOL, "{spec:?} {loss:?}: relative error {err:e}");
}

#[test]
fn group_layers_and_channel_normalisation() {
    let g = |channels, points| LayerSpec::Group {
        channels,
        points,
        init_std: 0.3,
        constant_over_positions: false,
    };
    // rho -> rho, rho -> trivial, dense head, segmentation loss on a base output
    for (i, (norm1, norm2)) in [
        (
            LayerSpec::BatchNorm {
                over: NormOver::Channels,
            },
            LayerSpec::LayerNorm {
                over: NormOver::Channels,
            },
        ),
        (
            LayerSpec::LayerNorm {
                over: NormOver::Channels,
            },
            LayerSpec::BatchNorm {
                over: NormOver::Channels,
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = NetworkSpec {
            layers: vec![
                g(3, Points::Base),
                LayerSpec::Tanh,
                norm1,
                g(2, Points::Base),
                LayerSpec::Softplus,
                norm2,
                LayerSpec::Sigmoid,
            ],
        };
        check_group_net(
            spec,
            "rot",
            4,
            Rep::base(2),
            Loss::SegmentationBce,
            40 + i as u64,
        );
    }
    let spec = NetworkSpec {
        layers: vec![
            g(3, Points::Base),
            LayerSpec::LeakyRelu { slope: 0.2 },
            g(4, Points::Trivial),
            LayerSpec::Tanh,
            LayerSpec::BatchNorm {
                over: NormOver::Features,
            },
            LayerSpec::Dense {
                out: 3,
                init_scale: 0.5,
                bias: true,
            },
        ],
    };
    check_group_net(
        spec,
        "trans2d",
        3,
        Rep::base(2),
        Loss::CrossEntropyLogits,
        50,
    );
}

#[test]
fn whole_e1_network() {
    for (i, norm) in [Normalisation::Batch, Normalisation::Layer]
        .into_iter()
        .enumerate()
    {
        check_group_net(
            NetworkSpec::invariant_binary_classifier(5, 3, 4, 3, norm),
            "perm",
            5,
            Rep::base(1),
            Loss::Bce,
            60 + i as u64,
        );
    }
}

#[test]
fn whole_e2_network() {
    for (i, norm) in [Normalisation::Batch, Normalisation::Layer]
        .into_iter()
        .enumerate()
    {
        check_group_net(
            NetworkSpec::invariant_classifier(4, 3, 4, norm),
            "trans2d",
            4,
            Rep::base(1),
            Loss::CrossEntropyOnProbabilities,
            70 + i as u64,
        );
    }
}

#[test]
fn whole_e3_network() {
    for (i, norm) in [Normalisation::Batch, Normalisation::Layer]
        .into_iter()
        .enumerate()
    {
        check_group_net(
            NetworkSpec::equivariant_segmenter(4, [3, 3, 2], norm),
            "rot",
            4,
            Rep::base(1),
            Loss::SegmentationBce,
            80 + i as u64,
        );
    }
}
