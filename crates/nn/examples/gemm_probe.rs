//! Profiling probe: the E2 paper network's chunked pass against the bare GEMMs it is made of.
use eqaug_groups::{Group, Rep};
use eqaug_nn::{Loss, Network, NetworkSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rand::SeedableRng;
use std::time::Instant;

fn t<F: FnMut()>(name: &str, flops: f64, mut f: F) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        f();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "{name:40} {:8.1} ms {:6.1} GFLOP/s",
        best * 1e3,
        flops / best / 1e9
    );
    best
}

fn main() {
    let (r, n) = (500usize, 6272usize);
    let x = Array2::<f32>::from_shape_fn((r, n), |(i, j)| ((i * 7 + j * 13) % 17) as f32 * 0.01);
    let w = Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 3 + j * 5) % 11) as f32 * 0.01);
    let mut y = Array2::<f32>::zeros((r, n));
    let mut dw = Array2::<f32>::zeros((n, n));
    let fl = 2.0 * (r * n * n) as f64;
    let net = Network::<f32>::new(
        &NetworkSpec::invariant_classifier_paper(),
        Group::builtin("trans2d", 14).unwrap(),
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .unwrap();
    let p = net.init_params(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let mut g = net.zeros();
    let xin =
        Array2::<f32>::from_shape_fn((r, 196), |(i, j)| ((i * 7 + j * 13) % 17) as f32 * 0.01);
    let mut tg = Array2::<f32>::zeros((r, 10));
    tg.column_mut(3).fill(1.0);
    let mut ws = net.workspace(r);
    let nf = 3.0 * net.linear_flops_per_sample() as f64 * r as f64;
    for _ in 0..2 {
        let mut s = 0.0;
        s += t("fwd  Y = X W^T", fl, || {
            general_mat_mul(1.0, &x, &w.t(), 0.0, &mut y)
        });
        s += t("bwd  dX = dY W", fl, || {
            general_mat_mul(1.0, &x, &w, 0.0, &mut y)
        });
        s += t("bwd  dW += dY^T X (beta 1)", fl, || {
            general_mat_mul(1.0, &y.t(), &x, 1.0, &mut dw)
        });
        println!("sum of the three layer-2 GEMMs: {:.1} ms", s * 1e3);
        t("network chunk 500", nf, || {
            net.accumulate_loss_and_grad(&p, xin.view(), tg.view(), 25, &mut g, &mut ws)
                .unwrap();
        });
        t("network forward chunk 500", nf / 3.0, || {
            net.forward(&p, xin.view(), 25, &mut ws).unwrap();
        });
    }
}
