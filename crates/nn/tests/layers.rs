//! The layer API: networks built from layers directly ([`Sequential`]), the loss / last-layer
//! checks and the presets that follow the loss, the smooth LeakyReLU, layer norm over each
//! channel's positions, weights with a support mask, and the distance of the data to the
//! LeakyReLU kinks. Gradients against central differences in f64 (as in gradcheck.rs).

mod common;

use std::sync::Arc;

use common::*;
use eqaug_nn::layers::{Dense, GroupLinear, Layer, LayerNorm, Pointwise, PointwiseFn, Softmax};
use eqaug_nn::{
    Activation, Group, LayerSpec, Loss, Network, NetworkSpec, NnError, NormOver, Normalisation,
    Params, Points, Projector, Real, Rep, Sequential, TensorKind,
};
use ndarray::{Array1, Array2, Axis};

const TOL: f64 = 1e-6;

/// `||g - g_fd|| / ||g||` for a [`Sequential`] (five-point central differences, h = 1e-5).
fn seq_grad_check(
    seq: &Sequential<f64>,
    p: &Params<f64>,
    x: &Array2<f64>,
    t: &Array2<f64>,
    mb: usize,
) -> f64 {
    let h = 1e-5;
    let mut ws = seq.workspace(x.nrows());
    let mut g = seq.zeros();
    seq.loss_and_grad(p, x.view(), t.view(), mb, &mut g, &mut ws)
        .unwrap();
    let mut q = p.clone();
    let mut diff = 0.0;
    for k in 0..p.len() {
        let v = p.as_slice()[k];
        let mut at = |d: f64| {
            q.as_mut_slice()[k] = v + d;
            seq.loss(&q, x.view(), t.view(), mb, &mut ws).unwrap()
        };
        let fd = (8.0 * (at(h) - at(-h)) - (at(2.0 * h) - at(-2.0 * h))) / (12.0 * h);
        q.as_mut_slice()[k] = v;
        diff += (g.as_slice()[k] - fd).powi(2);
    }
    diff.sqrt() / g.norm()
}

fn logsumexp(z: &[f64]) -> f64 {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// A network of `spec` over the swap group on 4 trivial channels, with the MSE loss.
fn swap_mse<T: Real>(spec: &NetworkSpec) -> Result<Network<T>, NnError> {
    Network::new(
        spec,
        Group::builtin("swap", 2).unwrap(),
        Rep::trivial(4),
        Loss::Mse,
    )
}

#[test]
fn preset_follows_the_loss_and_matches_a_hand_computation() {
    let (n, c, classes) = (4, 3, 5);
    let act = Activation::default();
    let logits_spec = NetworkSpec::invariant_classifier_with(
        n,
        c,
        classes,
        Normalisation::Batch,
        Loss::CrossEntropyLogits,
        act,
    );
    let probs_spec = NetworkSpec::invariant_classifier_with(
        n,
        c,
        classes,
        Normalisation::Batch,
        Loss::CrossEntropyOnProbabilities,
        act,
    );
    assert_eq!(
        probs_spec,
        NetworkSpec::invariant_classifier(n, c, classes, Normalisation::Batch)
    );
    assert_eq!(probs_spec.layers.last(), Some(&LayerSpec::Softmax));
    assert!(!logits_spec.layers.contains(&LayerSpec::Softmax));
    assert_eq!(logits_spec.layers.len() + 1, probs_spec.layers.len());

    let group = Group::builtin("trans2d", n).unwrap();
    let net_l = Network::<f64>::new(
        &logits_spec,
        group.clone(),
        Rep::base(1),
        Loss::CrossEntropyLogits,
    )
    .unwrap();
    let net_p = Network::<f64>::new(
        &probs_spec,
        group,
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .unwrap();
    let mut r = rng(3);
    let p_l = net_l.init_params(&mut r);
    // the softmax has no parameters: the same weights serve both networks
    let p_p = Params::from_vec(net_p.layout().clone(), p_l.as_slice().to_vec()).unwrap();
    let rows = 6;
    let x = gaussian(&mut r, rows, net_l.input_width(), 1.0);
    let labels: Vec<usize> = (0..rows).map(|i| (3 * i + 1) % classes).collect();
    let mut t = Array2::<f64>::zeros((rows, classes));
    for (i, &y) in labels.iter().enumerate() {
        t[[i, y]] = 1.0;
    }
    let mut ws = net_l.workspace(rows);
    let z = net_l
        .forward(&p_l, x.view(), rows, &mut ws)
        .unwrap()
        .to_owned();
    let (mut plain, mut double) = (0.0, 0.0);
    for (zr, &y) in z.axis_iter(Axis(0)).zip(&labels) {
        let zr = zr.to_vec();
        plain += logsumexp(&zr) - zr[y];
        let lse = logsumexp(&zr);
        let pr: Vec<f64> = zr.iter().map(|v| (v - lse).exp()).collect();
        double += logsumexp(&pr) - pr[y];
    }
    let loss_l = net_l.loss(&p_l, x.view(), t.view(), rows, &mut ws).unwrap();
    let mut ws_p = net_p.workspace(rows);
    let loss_p = net_p
        .loss(&p_p, x.view(), t.view(), rows, &mut ws_p)
        .unwrap();
    eprintln!("plain CE {loss_l} (hand {plain}), double softmax {loss_p} (hand {double})");
    assert!(
        (loss_l - plain).abs() <= 1e-12 * plain.abs(),
        "{loss_l} vs {plain}"
    );
    assert!(
        (loss_p - double).abs() <= 1e-12 * double.abs(),
        "{loss_p} vs {double}"
    );
    // the double softmax squashes each row's loss into [ln C + 1/C - 1, ln(C - 1 + e)]
    assert!((loss_l - loss_p).abs() > 1e-3 * loss_l.abs());
    let cf = classes as f64;
    let per_row = loss_p / rows as f64;
    assert!(per_row >= cf.ln() + 1.0 / cf - 1.0 && per_row <= (cf - 1.0 + 1f64.exp()).ln());
}

#[test]
fn losses_that_do_not_fit_the_last_layer_are_rejected() {
    let group = Group::builtin("trans2d", 4).unwrap();
    let double = Network::<f32>::new(
        &NetworkSpec::invariant_classifier(4, 3, 5, Normalisation::Batch),
        group.clone(),
        Rep::base(1),
        Loss::CrossEntropyLogits,
    )
    .unwrap_err();
    let msg = double.to_string();
    assert!(matches!(double, NnError::Loss { .. }), "{msg}");
    assert!(
        msg.contains("cross_entropy_logits") && msg.contains("softmax") && msg.contains("layer 8"),
        "{msg}"
    );
    let logits = NetworkSpec::invariant_classifier_with(
        4,
        3,
        5,
        Normalisation::Batch,
        Loss::CrossEntropyLogits,
        Activation::default(),
    );
    let no_softmax = Network::<f32>::new(
        &logits,
        group,
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .unwrap_err();
    let msg = no_softmax.to_string();
    assert!(matches!(no_softmax, NnError::Loss { .. }), "{msg}");
    assert!(
        msg.contains("cross_entropy_on_probabilities")
            && msg.contains("`dense`")
            && msg.contains("layer 7"),
        "{msg}"
    );
}

#[test]
fn group_error_is_kept_as_the_source() {
    use std::error::Error;
    let e = NnError::Group {
        layer: 2,
        source: eqaug_groups::GroupError::EmptyEquivariantSpace {
            what: "of group `x`".into(),
        },
    };
    let src = e.source().expect("a source");
    assert!(src.to_string().contains("of group `x`"), "{src}");
}

#[test]
fn smooth_leaky_relu_values_limit_and_gradient() {
    let (slope, beta) = (0.05, 4.0);
    let f = PointwiseFn::SmoothLeakyRelu {
        slope,
        sharpness: beta,
    };
    let xs = [-1e3, -3.0, -0.4, 0.0, 0.3, 2.5, 1e3];
    let run = |f: PointwiseFn| -> Vec<f64> {
        let layer = Pointwise::<f64>::new(f, xs.len()).unwrap();
        let seq =
            Sequential::new(vec![Arc::new(layer) as Arc<dyn Layer<f64>>], Loss::Mse, 1).unwrap();
        let mut ws = seq.workspace(1);
        let x = Array2::from_shape_vec((1, xs.len()), xs.to_vec()).unwrap();
        seq.forward(&seq.zeros(), x.view(), 1, &mut ws)
            .unwrap()
            .iter()
            .copied()
            .collect()
    };
    // against the formula with a naive softplus (fine away from overflow)
    for (&x, y) in xs.iter().zip(run(f)) {
        let want = if (beta * x).abs() < 50.0 {
            slope * x + (1.0 - slope) * (1.0 + (beta * x).exp()).ln() / beta
        } else if x > 0.0 {
            x
        } else {
            slope * x
        };
        assert!(
            y.is_finite() && (y - want).abs() <= 1e-12 * (1.0 + want.abs()),
            "{x}: {y} vs {want}"
        );
    }
    // tends to LeakyReLU: |f - leaky| <= (1 - slope) ln 2 / beta, with equality at 0
    let leaky = run(PointwiseFn::LeakyRelu { slope });
    for beta in [10.0, 1e3] {
        let smooth = run(PointwiseFn::SmoothLeakyRelu {
            slope,
            sharpness: beta,
        });
        let bound = (1.0 - slope) * std::f64::consts::LN_2 / beta;
        for (a, b) in smooth.iter().zip(&leaky) {
            assert!((a - b).abs() <= bound * (1.0 + 1e-12), "{a} {b} {bound}");
        }
        assert!((smooth[3] - bound).abs() < 1e-12);
    }
    // exact gradient inside a network (mini-batches 4, 4, 2), f64
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::dense(6, 0.7, true),
            LayerSpec::SmoothLeakyRelu {
                slope: 0.1,
                sharpness: 3.0,
            },
            LayerSpec::dense(3, 0.7, true),
        ],
    };
    let net = swap_mse::<f64>(&spec).unwrap();
    let mut r = rng(11);
    let mut p = net.init_params(&mut r);
    perturb(&mut p, &mut r, 0.3);
    let x = gaussian(&mut r, 10, 4, 1.0);
    let t = targets(&mut r, Loss::Mse, 10, 3);
    let err = grad_check(&net, &p, &x, &t, 4);
    assert!(err <= TOL, "relative error {err:e}");
    // f32 agrees with f64 to f32 round-off
    let net32 = swap_mse::<f32>(&spec).unwrap();
    let (p32, x32) = (p.cast::<f32>(), x.mapv(|v| v as f32));
    let y64 = net
        .forward(&p, x.view(), 4, &mut net.workspace(10))
        .unwrap()
        .to_owned();
    let y32 = net32
        .forward(&p32, x32.view(), 4, &mut net32.workspace(10))
        .unwrap()
        .to_owned();
    let d = (&y64 - &y32.mapv(f64::from))
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(d < 1e-5, "f32 vs f64: {d:e}");
    // out-of-range hyperparameters are named
    let bad = NetworkSpec {
        layers: vec![LayerSpec::SmoothLeakyRelu {
            slope: 0.1,
            sharpness: 0.0,
        }],
    };
    let err = swap_mse::<f32>(&bad).unwrap_err();
    assert!(
        matches!(err, NnError::InvalidSpec { layer: 0, .. })
            && err.to_string().contains("sharpness"),
        "{err}"
    );
}

#[test]
fn presets_take_the_activation() {
    let smooth = Activation::SmoothLeakyRelu {
        slope: 0.01,
        sharpness: 5.0,
    };
    let is_leaky = |l: &LayerSpec| matches!(l, LayerSpec::LeakyRelu { .. });
    let is_smooth = |l: &LayerSpec| matches!(l, LayerSpec::SmoothLeakyRelu { .. });
    let default = Activation::default();
    assert_eq!(default, Activation::LeakyRelu { slope: 0.01 });
    for (with_default, plain, with_smooth, kinks) in [
        (
            NetworkSpec::invariant_binary_classifier_with(
                5,
                3,
                4,
                3,
                Normalisation::Batch,
                default,
            ),
            NetworkSpec::invariant_binary_classifier(5, 3, 4, 3, Normalisation::Batch),
            NetworkSpec::invariant_binary_classifier_with(5, 3, 4, 3, Normalisation::Batch, smooth),
            3,
        ),
        (
            NetworkSpec::invariant_classifier_with(
                4,
                3,
                5,
                Normalisation::Layer,
                Loss::CrossEntropyOnProbabilities,
                default,
            ),
            NetworkSpec::invariant_classifier(4, 3, 5, Normalisation::Layer),
            NetworkSpec::invariant_classifier_with(
                4,
                3,
                5,
                Normalisation::Layer,
                Loss::CrossEntropyOnProbabilities,
                smooth,
            ),
            2,
        ),
        (
            NetworkSpec::equivariant_segmenter_with(4, [3, 3, 2], Normalisation::Batch, default),
            NetworkSpec::equivariant_segmenter(4, [3, 3, 2], Normalisation::Batch),
            NetworkSpec::equivariant_segmenter_with(4, [3, 3, 2], Normalisation::Batch, smooth),
            4,
        ),
    ] {
        assert_eq!(with_default, plain);
        assert_eq!(plain.layers.iter().filter(|l| is_leaky(l)).count(), kinks);
        assert_eq!(
            with_smooth.layers.iter().filter(|l| is_smooth(l)).count(),
            kinks
        );
        assert!(!with_smooth.layers.iter().any(is_leaky));
    }
    // the activation in a config
    let a: Activation =
        serde_json::from_str(r#"{"type": "smooth_leaky_relu", "slope": 0.01, "sharpness": 5.0}"#)
            .unwrap();
    assert_eq!(a, smooth);
    assert!(serde_json::from_str::<Activation>(r#"{"type": "leaky_relu", "sharp": 1}"#).is_err());
    // a whole smooth E1 network has exact gradients
    let spec =
        NetworkSpec::invariant_binary_classifier_with(5, 3, 4, 3, Normalisation::Batch, smooth);
    let net = Network::<f64>::new(
        &spec,
        Group::builtin("perm", 5).unwrap(),
        Rep::base(1),
        Loss::Bce,
    )
    .unwrap();
    // the draw of gradcheck.rs's whole_e1_network (some draws saturate the sigmoid into the
    // BCE clamp, with LeakyReLU as with this activation)
    let mut r = rng(60);
    let mut p = net.init_params(&mut r);
    perturb(&mut p, &mut r, 0.2);
    let x = gaussian(&mut r, 9, net.input_width(), 1.0);
    let t = targets(&mut r, Loss::Bce, 9, 1);
    let err = grad_check(&net, &p, &x, &t, 4);
    assert!(err <= TOL, "relative error {err:e}");
}

#[test]
fn min_abs_preactivation_against_a_hand_forward_pass() {
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::dense(5, 0.8, true),
            LayerSpec::LeakyRelu { slope: 0.1 },
            LayerSpec::dense(3, 0.8, true),
            LayerSpec::LeakyRelu { slope: 0.2 },
            LayerSpec::dense(2, 0.8, false),
        ],
    };
    let net = swap_mse::<f64>(&spec).unwrap();
    let mut r = rng(21);
    let mut p = net.init_params(&mut r);
    perturb(&mut p, &mut r, 0.3);
    let x = gaussian(&mut r, 7, 4, 1.0);
    // by hand
    let dense = |a: &Array2<f64>, w: usize, b: usize| -> Array2<f64> {
        let wm = p.tensor(w).matrix().to_owned();
        let bv = Array1::from(p.tensor(b).data.to_vec());
        a.dot(&wm.t()) + &bv
    };
    let min_abs = |a: &Array2<f64>| a.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
    let z1 = dense(&x, 0, 1);
    let a1 = z1.mapv(|v| if v > 0.0 { v } else { 0.1 * v });
    let z2 = dense(&a1, 2, 3);
    let (m1, m2) = (min_abs(&z1), min_abs(&z2));
    let mut ws = net.workspace(7);
    let per = net
        .sequential()
        .min_abs_preactivation_per_layer(&p, x.view(), 7, &mut ws)
        .unwrap();
    assert_eq!(per.len(), 2);
    assert_eq!((per[0].0, per[1].0), (1, 3));
    assert!((per[0].1 - m1).abs() <= 1e-14 * (1.0 + m1), "{per:?} {m1}");
    assert!((per[1].1 - m2).abs() <= 1e-14 * (1.0 + m2), "{per:?} {m2}");
    let m = net.min_abs_preactivation(&p, x.view(), 7, &mut ws).unwrap();
    assert_eq!(m, per[0].1.min(per[1].1));
    assert!(m > 0.0 && m < 1.0);
    // no kinks: +inf; the E1 preset has three LeakyReLUs
    let smooth = NetworkSpec::invariant_binary_classifier_with(
        5,
        3,
        4,
        3,
        Normalisation::Batch,
        Activation::SmoothLeakyRelu {
            slope: 0.01,
            sharpness: 5.0,
        },
    );
    let g = Group::builtin("perm", 5).unwrap();
    let net = Network::<f32>::new(&smooth, g.clone(), Rep::base(1), Loss::Bce).unwrap();
    let p = net.init_params(&mut r);
    let x = gaussian(&mut r, 6, net.input_width(), 1.0).mapv(|v| v as f32);
    let mut ws = net.workspace(6);
    assert_eq!(
        net.min_abs_preactivation(&p, x.view(), 3, &mut ws).unwrap(),
        f64::INFINITY
    );
    let net = Network::<f32>::new(
        &NetworkSpec::invariant_binary_classifier(5, 3, 4, 3, Normalisation::Batch),
        g,
        Rep::base(1),
        Loss::Bce,
    )
    .unwrap();
    let per = net
        .sequential()
        .min_abs_preactivation_per_layer(&p, x.view(), 3, &mut ws)
        .unwrap();
    assert_eq!(per.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 3, 6]);
}

#[test]
fn layer_norm_over_positions() {
    // forward: every channel's map of every row has mean 0 and mean square v / (v + eps)
    let (ch, pos, rows) = (3, 5, 4);
    let ln = LayerNorm::new(NormOver::Positions, ch, pos).unwrap();
    let seq = Sequential::new(vec![Arc::new(ln) as Arc<dyn Layer<f64>>], Loss::Mse, pos).unwrap();
    let mut r = rng(31);
    let x = gaussian(&mut r, rows, ch * pos, 2.0) + 0.7;
    let mut ws = seq.workspace(rows);
    let y = seq
        .forward(&seq.zeros(), x.view(), 2, &mut ws)
        .unwrap()
        .to_owned();
    for i in 0..rows {
        for k in 0..ch {
            let xs: Vec<f64> = (0..pos).map(|s| x[[i, k * pos + s]]).collect();
            let ys: Vec<f64> = (0..pos).map(|s| y[[i, k * pos + s]]).collect();
            let mx = xs.iter().sum::<f64>() / pos as f64;
            let v = xs.iter().map(|a| (a - mx).powi(2)).sum::<f64>() / pos as f64;
            let my = ys.iter().sum::<f64>() / pos as f64;
            let ms = ys.iter().map(|a| a * a).sum::<f64>() / pos as f64;
            assert!(my.abs() < 1e-14, "{my}");
            assert!((ms - v / (v + 1e-5)).abs() < 1e-13, "{ms} {v}");
        }
    }
    assert!(LayerNorm::new(NormOver::Positions, 3, 1).is_err());
    // gradient in a group network (positions of the 4 x 4 grid), f64
    let g = |channels| LayerSpec::group(channels, Points::Base, 0.3);
    let spec = NetworkSpec {
        layers: vec![
            g(3),
            LayerSpec::Tanh,
            LayerSpec::LayerNorm {
                over: NormOver::Positions,
            },
            g(2),
            LayerSpec::Sigmoid,
        ],
    };
    let net = Network::<f64>::new(
        &spec,
        Group::builtin("rot", 4).unwrap(),
        Rep::base(1),
        Loss::SegmentationBce,
    )
    .unwrap();
    let mut p = net.init_params(&mut r);
    perturb(&mut p, &mut r, 0.2);
    let x = gaussian(&mut r, 9, net.input_width(), 1.0);
    let t = targets(&mut r, Loss::SegmentationBce, 9, net.output_width());
    let err = grad_check(&net, &p, &x, &t, 4);
    assert!(err <= TOL, "relative error {err:e}");
    // equivariant: the rotations permute the positions within each channel
    let p = net.init_params(&mut r);
    let els: Vec<_> = net.group().generators().to_vec();
    let e = net
        .equivariance_error(&p, x.view(), &els, 4, &mut net.workspace(9))
        .unwrap();
    assert!(e < 1e-13, "{e:e}");
    // batch norm has no `positions`
    let bn = NetworkSpec {
        layers: vec![LayerSpec::BatchNorm {
            over: NormOver::Positions,
        }],
    };
    let err = Network::<f64>::new(&bn, net.group().clone(), Rep::base(2), Loss::Mse).unwrap_err();
    assert!(
        matches!(err, NnError::InvalidSpec { layer: 0, .. }),
        "{err}"
    );
}

/// A 3 x 3 "kernel" weight `[c_out, c_in * 9]` constrained by C4 acting on the 9 offsets (a
/// group other than the network's) and to the support centre + edges (no corners).
fn kernel_kind(c_out: usize, c_in: usize) -> (TensorKind, Vec<bool>) {
    let rot3 = Group::builtin("rot", 3).unwrap();
    let projector = Projector::between(&rot3, Rep::base(c_in), Rep::trivial(c_out)).unwrap();
    let corner = |o: usize| matches!(o, 0 | 2 | 6 | 8);
    let support: Vec<bool> = (0..c_out * c_in * 9).map(|i| !corner(i % 9)).collect();
    let kind = TensorKind::group_with_support(projector, support.clone().into()).unwrap();
    (kind, support)
}

#[test]
fn weights_with_a_support_mask() {
    let (kind, support) = kernel_kind(2, 3);
    let mut r = rng(41);
    let w: Vec<f64> = gaussian(&mut r, 1, 2 * 3 * 9, 1.0)
        .into_raw_vec_and_offset()
        .0;
    let mut pw = w.clone();
    kind.project_in_place(&mut pw).unwrap();
    // by hand: per channel pair, the centre stays, the four edges get their mean, corners 0
    let mut want = vec![0.0; w.len()];
    for pair in 0..6 {
        let b = &w[pair * 9..(pair + 1) * 9];
        let edge = (b[1] + b[3] + b[5] + b[7]) / 4.0;
        want[pair * 9 + 4] = b[4];
        for o in [1, 3, 5, 7] {
            want[pair * 9 + o] = edge;
        }
    }
    for (a, b) in pw.iter().zip(&want) {
        assert!((a - b).abs() < 1e-15, "{a} {b}");
    }
    let d = kind.distance_to_equivariant_f64(&w).unwrap().unwrap();
    let dw = w
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((d - dw).abs() < 1e-14 * dw);
    assert!(kind.distance_to_equivariant_f64(&pw).unwrap().unwrap() < 1e-15);
    // a support that is not a union of orbits, or of the wrong length, is refused
    let rot3 = Group::builtin("rot", 3).unwrap();
    let pr = Projector::between(&rot3, Rep::base(3), Rep::trivial(2)).unwrap();
    let mut bad = support.clone();
    bad[1] = false;
    assert!(TensorKind::group_with_support(pr.clone(), bad.into()).is_err());
    assert!(TensorKind::group_with_support(pr, support[1..].to_vec().into()).is_err());
}

#[test]
fn a_network_built_from_layers_directly() {
    // 9 inputs (a 3 x 3 patch, one channel) -> 2 features through a C4-projected, masked
    // weight, tanh, layer norm, dense head with bias, softmax; cross-entropy on probabilities
    let rot3 = Group::builtin("rot", 3).unwrap();
    let projector = Projector::between(&rot3, Rep::base(1), Rep::trivial(2)).unwrap();
    let corner = |o: usize| matches!(o, 0 | 2 | 6 | 8);
    let support: Arc<[bool]> = (0..18).map(|i| !corner(i % 9)).collect();
    let layers: Vec<Arc<dyn Layer<f64>>> = vec![
        Arc::new(GroupLinear::with_support(projector, support, 0.5, false).unwrap()),
        Arc::new(Pointwise::new(PointwiseFn::Tanh, 2).unwrap()),
        Arc::new(LayerNorm::new(NormOver::Features, 1, 2).unwrap()),
        Arc::new(Dense::new(2, 3, 0.7, true).unwrap()),
        Arc::new(Softmax::new(3)),
    ];
    let seq = Sequential::new(layers, Loss::CrossEntropyOnProbabilities, 1).unwrap();
    assert_eq!((seq.input_width(), seq.output_width()), (9, 3));
    let names: Vec<_> = seq
        .layout()
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["layer0.weight", "layer3.weight", "layer3.bias"]);
    let mut r = rng(51);
    let p = seq.init_params(&mut r);
    assert!(p.distance_to_equivariant() < 1e-15);
    let w0 = p.tensor(0).data;
    assert!((0..18).filter(|&i| corner(i % 9)).all(|i| w0[i] == 0.0));
    assert!(w0.iter().any(|&v| v != 0.0));
    let mut q = p.clone();
    perturb(&mut q, &mut r, 0.3);
    let x = gaussian(&mut r, 8, 9, 1.0);
    let t = targets(&mut r, Loss::CrossEntropyOnProbabilities, 8, 3);
    let err = seq_grad_check(&seq, &q, &x, &t, 3);
    assert!(err <= TOL, "relative error {err:e}");
    // a projected gradient step stays in E and on the support
    let mut g = seq.zeros();
    seq.loss_and_grad(&p, x.view(), t.view(), 3, &mut g, &mut seq.workspace(8))
        .unwrap();
    g.project_group_layers();
    let mut p2 = p.clone();
    p2.axpy(-0.1, &g);
    assert!(p2.distance_to_equivariant() < 1e-15);
    // a width mismatch names the layer
    let bad: Vec<Arc<dyn Layer<f64>>> = vec![
        Arc::new(Dense::new(4, 3, 1.0, false).unwrap()),
        Arc::new(Softmax::new(4)),
    ];
    assert!(matches!(
        Sequential::new(bad, Loss::Mse, 1),
        Err(NnError::Shape { layer: 1, .. })
    ));
}

#[test]
fn the_network_is_its_sequence() {
    // re-wrapping a network's layers in a Sequential gives bit-identical results
    let spec = NetworkSpec::invariant_classifier(4, 3, 5, Normalisation::Batch);
    let loss = Loss::CrossEntropyOnProbabilities;
    let net = Network::<f32>::new(
        &spec,
        Group::builtin("trans2d", 4).unwrap(),
        Rep::base(1),
        loss,
    )
    .unwrap();
    let seq = Sequential::new(
        net.sequential().layers().to_vec(),
        loss,
        net.sequential().output_positions(),
    )
    .unwrap();
    let mut r = rng(61);
    let p = net.init_params(&mut r);
    let x = gaussian(&mut r, 20, 16, 1.0).mapv(|v| v as f32);
    let t = targets(&mut r, loss, 20, 5).mapv(|v| v as f32);
    let (mut g1, mut g2) = (net.zeros(), seq.zeros());
    let l1 = net
        .loss_and_grad(&p, x.view(), t.view(), 5, &mut g1, &mut net.workspace(20))
        .unwrap();
    let l2 = seq
        .loss_and_grad(&p, x.view(), t.view(), 5, &mut g2, &mut seq.workspace(20))
        .unwrap();
    assert_eq!(l1.to_bits(), l2.to_bits());
    assert_eq!(g1.as_slice(), g2.as_slice());
}
