//! Helpers shared by the integration tests.
#![allow(dead_code)]

use eqaug_nn::{Group, LayerSpec, Loss, Network, NetworkSpec, Params, Rep, Sequential};
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

pub fn rng(seed: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn gaussian(rng: &mut impl Rng, r: usize, w: usize, std: f64) -> Array2<f64> {
    Array2::from_shape_fn((r, w), |_| rng.sample::<f64, _>(StandardNormal) * std)
}

/// Targets of the right kind for `loss`: 0/1 entries, one-hot rows, or Gaussian values.
pub fn targets(rng: &mut impl Rng, loss: Loss, r: usize, w: usize) -> Array2<f64> {
    match loss {
        Loss::Bce
        | Loss::SegmentationBce
        | Loss::BceOnProbabilities
        | Loss::SegmentationBceOnProbabilities => {
            Array2::from_shape_fn((r, w), |_| if rng.gen_bool(0.5) { 1.0 } else { 0.0 })
        }
        Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities => {
            let mut t = Array2::zeros((r, w));
            for i in 0..r {
                t[[i, rng.gen_range(0..w)]] = 1.0;
            }
            t
        }
        Loss::Mse => gaussian(rng, r, w, 1.0),
    }
}

/// Adds i.i.d. `N(0, std^2)` to every parameter (moves group layers off E).
pub fn perturb(p: &mut Params<f64>, rng: &mut impl Rng, std: f64) {
    for v in p.as_mut_slice() {
        *v += rng.sample::<f64, _>(StandardNormal) * std;
    }
}

/// Relative error `||g - g_fd|| / ||g||` between the hand-written gradient of the loss sum and
/// central finite differences (f64, five-point stencil, step `h = 1e-5`, so the truncation
/// error stays far below the tolerance even where a layer norm over two channels is sharply
/// curved), over every parameter.
pub fn grad_check(
    net: &Sequential<f64>,
    p: &Params<f64>,
    x: &Array2<f64>,
    t: &Array2<f64>,
    minibatch: usize,
) -> f64 {
    let h = 1e-5;
    let mut ws = net.workspace(x.nrows());
    let mut g = net.zeros();
    let l0 = net
        .loss_and_grad(p, x.view(), t.view(), minibatch, &mut g, &mut ws)
        .unwrap();
    assert!(l0.is_finite());
    let l1 = net.loss(p, x.view(), t.view(), minibatch, &mut ws).unwrap();
    assert_eq!(l0, l1, "loss() and loss_and_grad() disagree");
    let mut q = p.clone();
    let mut num = vec![0.0; p.len()];
    for k in 0..p.len() {
        let v = p.as_slice()[k];
        let mut at = |d: f64| {
            q.as_mut_slice()[k] = v + d;
            net.loss(&q, x.view(), t.view(), minibatch, &mut ws)
                .unwrap()
        };
        let (l1p, l1m, l2p, l2m) = (at(h), at(-h), at(2.0 * h), at(-2.0 * h));
        q.as_mut_slice()[k] = v;
        num[k] = (8.0 * (l1p - l1m) - (l2p - l2m)) / (12.0 * h);
    }
    let diff: f64 = g
        .as_slice()
        .iter()
        .zip(&num)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = g.as_slice().iter().map(|a| a * a).sum::<f64>().sqrt();
    assert!(norm > 0.0, "zero gradient: the check would be vacuous");
    eprintln!(
        "grad check: {} params, relative error {:e}",
        p.len(),
        diff / norm
    );
    diff / norm
}

/// Dense(`hidden`, bias) -> `mid` -> Dense(`out`, bias) -> `tail` on a trivial input of
/// `input` features (the swap group, which the dense layers do not see).
pub fn dense_stack(
    input: usize,
    hidden: usize,
    mid: Vec<LayerSpec>,
    tail: Vec<LayerSpec>,
    out: usize,
    loss: Loss,
) -> (NetworkSpec, Network<f64>) {
    let mut layers = vec![LayerSpec::Dense {
        out: hidden,
        init_scale: 0.7,
        bias: true,
    }];
    layers.extend(mid);
    layers.push(LayerSpec::Dense {
        out,
        init_scale: 0.7,
        bias: true,
    });
    layers.extend(tail);
    let spec = NetworkSpec { layers };
    let group = Group::builtin("swap", 2).unwrap();
    let net = Network::<f64>::new(&spec, group, Rep::trivial(input), loss).unwrap();
    (spec, net)
}
