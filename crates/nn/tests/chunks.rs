//! A chunk of 500 rows with mini-batches of 25 gives the same loss and gradient as 20 separate
//! chunks of 25; gradients accumulate; non-contiguous inputs work.

mod common;

use common::*;
use eqaug_nn::{Activation, Group, Loss, Network, NetworkSpec, Normalisation, Params, Rep};
use ndarray::{s, Array2, ShapeBuilder};

fn rel(a: &Params<f64>, b: &Params<f64>) -> f64 {
    a.distance(b) / a.norm()
}

fn chunk_vs_minibatches(spec: NetworkSpec, group: &str, n: usize, loss: Loss, seed: u64) {
    let net =
        Network::<f64>::new(&spec, Group::builtin(group, n).unwrap(), Rep::base(1), loss).unwrap();
    let mut r = rng(seed);
    let p = net.init_params(&mut r);
    let x = gaussian(&mut r, 500, net.input_width(), 1.0);
    let t = targets(&mut r, loss, 500, net.output_width());

    let mut ws = net.workspace(500);
    let mut g_chunk = net.zeros();
    let l_chunk = net
        .loss_and_grad(&p, x.view(), t.view(), 25, &mut g_chunk, &mut ws)
        .unwrap();

    let mut ws25 = net.workspace(25);
    let mut g_sep = net.zeros();
    let mut l_sep = 0.0;
    for b in 0..20 {
        let rows = s![b * 25..(b + 1) * 25, ..];
        l_sep += net
            .accumulate_loss_and_grad(&p, x.slice(rows), t.slice(rows), 25, &mut g_sep, &mut ws25)
            .unwrap();
    }
    let dl = (l_chunk - l_sep).abs() / l_sep.abs();
    let dg = rel(&g_chunk, &g_sep);
    eprintln!("{spec:?}\n  loss rel diff {dl:e}, grad rel diff {dg:e}");
    assert!(dl < 1e-13, "loss differs: {l_chunk} vs {l_sep}");
    assert!(dg < 1e-12, "gradient differs: relative {dg:e}");

    // f32: same to f32 round-off
    let net32 =
        Network::<f32>::new(&spec, Group::builtin(group, n).unwrap(), Rep::base(1), loss).unwrap();
    let p32: Params<f32> = p.cast();
    let (x32, t32) = (x.mapv(|v| v as f32), t.mapv(|v| v as f32));
    let mut ws = net32.workspace(500);
    let mut g_chunk = net32.zeros();
    let l_chunk = net32
        .loss_and_grad(&p32, x32.view(), t32.view(), 25, &mut g_chunk, &mut ws)
        .unwrap();
    let mut g_sep = net32.zeros();
    let mut l_sep = 0.0f32;
    for b in 0..20 {
        let rows = s![b * 25..(b + 1) * 25, ..];
        l_sep += net32
            .accumulate_loss_and_grad(
                &p32,
                x32.slice(rows),
                t32.slice(rows),
                25,
                &mut g_sep,
                &mut ws,
            )
            .unwrap();
    }
    let dg = g_chunk.distance(&g_sep) / g_chunk.norm();
    assert!(
        ((l_chunk - l_sep) / l_sep).abs() < 1e-5 && dg < 1e-4,
        "f32: {l_chunk} {l_sep} {dg:e}"
    );
}

#[test]
fn chunk_of_500_equals_20_chunks_of_25() {
    chunk_vs_minibatches(
        NetworkSpec::invariant_classifier(5, 4, 10, Normalisation::Batch),
        "trans2d",
        5,
        Loss::CrossEntropyOnProbabilities,
        1,
    );
    chunk_vs_minibatches(
        NetworkSpec::invariant_binary_classifier(5, 4, 6, 4, Normalisation::Batch),
        "perm",
        5,
        Loss::Bce,
        2,
    );
    chunk_vs_minibatches(
        NetworkSpec::equivariant_segmenter(4, [3, 3, 2], Normalisation::Batch),
        "rot",
        4,
        Loss::SegmentationBce,
        3,
    );
}

#[test]
fn gradients_accumulate_and_views_work() {
    // the E2 preset for plain cross-entropy (no final softmax: logits)
    let loss = Loss::CrossEntropyLogits;
    let spec = NetworkSpec::invariant_classifier_with(
        4,
        3,
        5,
        Normalisation::Batch,
        loss,
        Activation::default(),
    );
    let net = Network::<f64>::new(
        &spec,
        Group::builtin("trans2d", 4).unwrap(),
        Rep::base(1),
        loss,
    )
    .unwrap();
    let mut r = rng(7);
    let p = net.init_params(&mut r);
    let x = gaussian(&mut r, 30, net.input_width(), 1.0);
    let t = targets(&mut r, loss, 30, net.output_width());
    let mut ws = net.workspace(4); // grows on demand
    let mut g1 = net.zeros();
    let l1 = net
        .loss_and_grad(&p, x.view(), t.view(), 10, &mut g1, &mut ws)
        .unwrap();
    // accumulate_loss_and_grad adds to what is there ...
    let mut g2 = g1.clone();
    let l2 = net
        .accumulate_loss_and_grad(&p, x.view(), t.view(), 10, &mut g2, &mut ws)
        .unwrap();
    assert_eq!(l1, l2);
    let mut twice = g1.clone();
    twice.scale(2.0);
    assert!(rel(&twice, &g2) < 1e-15);
    // ... loss_and_grad overwrites it, bit for bit the gradient from zero
    let l2b = net
        .loss_and_grad(&p, x.view(), t.view(), 10, &mut g2, &mut ws)
        .unwrap();
    assert_eq!(l1, l2b);
    assert_eq!(g2.as_slice(), g1.as_slice());

    // a column-major (non-contiguous rows) copy of the same data gives the same result
    let mut xf = Array2::<f64>::zeros(x.raw_dim().f());
    xf.assign(&x);
    let mut tf = Array2::<f64>::zeros(t.raw_dim().f());
    tf.assign(&t);
    let mut g3 = net.zeros();
    let l3 = net
        .loss_and_grad(&p, xf.view(), tf.view(), 10, &mut g3, &mut ws)
        .unwrap();
    assert!((l3 - l1).abs() < 1e-13 * l1.abs());
    assert!(rel(&g1, &g3) < 1e-13);
    let out = net.forward(&p, x.view(), 10, &mut ws).unwrap().to_owned();
    assert_eq!(out.dim(), (30, 5));
    // with batch norm the output depends on the mini-batch split; with one batch of all rows too
    let out_all = net.forward(&p, x.view(), 30, &mut ws).unwrap().to_owned();
    assert!((&out - &out_all).iter().any(|v| v.abs() > 1e-6));
}
