//! Equivariance of whole networks with group layers in E: invariance (E1, E2, E4 groups) or
//! equivariance (E3: rotating the input rotates the output masks), under the generators and
//! random elements, in f64 to 1e-10 and in f32 to 1e-5 (relative to the output scale); and
//! detection of one layer pushed off E.

mod common;

use common::*;
use eqaug_nn::{Group, Loss, Network, NetworkSpec, Normalisation, Params, Perm, Real, Rep};
use ndarray::Array2;
use std::sync::Arc;

struct Case {
    name: &'static str,
    group: Arc<Group>,
    spec: NetworkSpec,
    loss: Loss,
}

fn cases() -> Vec<Case> {
    let mk = |name, g: &str, n, spec, loss| Case {
        name,
        group: Group::builtin(g, n).unwrap(),
        spec,
        loss,
    };
    let e2 = |n, norm| NetworkSpec::invariant_classifier(n, 3, 4, norm);
    vec![
        mk(
            "E1 perm",
            "perm",
            5,
            NetworkSpec::invariant_binary_classifier(5, 3, 4, 3, Normalisation::Batch),
            Loss::Bce,
        ),
        mk(
            "E1 perm LN",
            "perm",
            5,
            NetworkSpec::invariant_binary_classifier(5, 3, 4, 3, Normalisation::Layer),
            Loss::Bce,
        ),
        mk(
            "E2 trans2d",
            "trans2d",
            5,
            e2(5, Normalisation::Batch),
            Loss::CrossEntropyOnProbabilities,
        ),
        mk(
            "E4 rot",
            "rot",
            6,
            e2(6, Normalisation::Batch),
            Loss::CrossEntropyOnProbabilities,
        ),
        mk(
            "E4 trans1d",
            "trans1d",
            5,
            e2(5, Normalisation::Layer),
            Loss::CrossEntropyOnProbabilities,
        ),
        mk(
            "E4 rototrans",
            "rototrans",
            4,
            e2(4, Normalisation::Batch),
            Loss::CrossEntropyOnProbabilities,
        ),
        mk(
            "E3 rot",
            "rot",
            6,
            NetworkSpec::equivariant_segmenter(6, [3, 3, 2], Normalisation::Batch),
            Loss::SegmentationBce,
        ),
        mk(
            "E3 rot LN",
            "rot",
            6,
            NetworkSpec::equivariant_segmenter(6, [3, 3, 2], Normalisation::Layer),
            Loss::SegmentationBce,
        ),
    ]
}

/// The network's own check, with a fresh workspace.
fn equivariance_error<T: Real>(
    net: &Network<T>,
    p: &Params<T>,
    x: &Array2<T>,
    elements: &[Perm],
    minibatch: usize,
) -> f64 {
    let mut ws = net.workspace(x.nrows());
    net.equivariance_error(p, x.view(), elements, minibatch, &mut ws)
        .unwrap()
}

fn elements(group: &Group, seed: u64) -> Vec<Perm> {
    let mut r = rng(seed);
    let mut v = group.generators().to_vec();
    v.extend((0..4).map(|_| group.sample(&mut r)));
    v
}

#[test]
fn networks_in_e_are_invariant_or_equivariant() {
    for (i, case) in cases().into_iter().enumerate() {
        let net =
            Network::<f64>::new(&case.spec, case.group.clone(), Rep::base(1), case.loss).unwrap();
        let mut r = rng(100 + i as u64);
        let p = net.init_params(&mut r);
        assert!(
            p.distance_to_equivariant() < 1e-14,
            "{}: init not in E",
            case.name
        );
        let x = gaussian(&mut r, 12, net.input_width(), 1.0);
        let els = elements(&case.group, 200 + i as u64);
        let e64 = equivariance_error(&net, &p, &x, &els, 4);
        assert!(e64 < 1e-10, "{}: f64 equivariance error {e64:e}", case.name);

        let net32 =
            Network::<f32>::new(&case.spec, case.group.clone(), Rep::base(1), case.loss).unwrap();
        let p32: Params<f32> = p.cast();
        let x32 = x.mapv(|v| v as f32);
        let e32 = equivariance_error(&net32, &p32, &x32, &els, 4);
        assert!(e32 < 1e-5, "{}: f32 equivariance error {e32:e}", case.name);
        eprintln!(
            "{}: relative equivariance error f64 {e64:.1e}, f32 {e32:.1e}",
            case.name
        );
    }
}

#[test]
fn a_layer_off_e_is_detected() {
    for (i, case) in cases().into_iter().enumerate() {
        let net =
            Network::<f64>::new(&case.spec, case.group.clone(), Rep::base(1), case.loss).unwrap();
        let mut r = rng(300 + i as u64);
        let mut p = net.init_params(&mut r);
        // push the second group layer off E
        let k = p.group_layers().nth(1).unwrap().index;
        let std = 0.05 * p.tensor(k).data.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for v in p.tensor_mut(k).data.iter_mut() {
            *v += rand::Rng::sample::<f64, _>(&mut r, rand_distr::StandardNormal) * std;
        }
        let off = p.distance_to_equivariant_per_group_layer();
        assert!(off[1] > 1e-3 && off[0] < 1e-12, "{}: {off:?}", case.name);
        let x = gaussian(&mut r, 12, net.input_width(), 1.0);
        let els = elements(&case.group, 400 + i as u64);
        let e = equivariance_error(&net, &p, &x, &els, 4);
        assert!(
            e > 1e-6,
            "{}: off-E layer not detected (error {e:e})",
            case.name
        );
        // projecting restores equivariance
        p.project_group_layers();
        let e = equivariance_error(&net, &p, &x, &els, 4);
        assert!(e < 1e-10, "{}: after projection {e:e}", case.name);
    }
}
