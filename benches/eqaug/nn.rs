//! Forward + backward of the paper-size E2 network (trans2d on 14 x 14: group layers
//! 1 -> 32 -> 32 channels, invariant layer -> 32, batch norm, dense head -> 10) in f32, per
//! chunk of 25 and of 500 rows (mini-batches of 25 inside), against a large f32 GEMM.
//!
//! Besides criterion's timings (throughput in samples), it prints ms per sample and the
//! effective GFLOP/s = 3 x 2 x (multiply-adds of the linear layers) per second (forward plus
//! the two backward GEMMs, counted for every layer as in the issue).

use criterion::{BenchmarkId, Criterion, Throughput};
use eqaug::groups::{Group, Rep};
use eqaug::nn::{Loss, Network, NetworkSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// Whether a criterion name filter on the command line selects this module (the setup
/// allocates and initialises a 6272 x 6272 layer, so skip it when not asked for).
fn selected() -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| "nn/e2_paper_f32/loss_and_grad".contains(f.as_str()) || f.contains("nn"))
}

fn random(rng: &mut ChaCha8Rng, r: usize, c: usize) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |_| rng.gen_range(-1.0f32..1.0))
}

/// GFLOP/s of one large f32 GEMM `m x k` times `k x n` (best of `reps`).
fn gemm_gflops(rng: &mut ChaCha8Rng, m: usize, k: usize, n: usize, reps: usize) -> f64 {
    let a = random(rng, m, k);
    let b = random(rng, k, n);
    let mut c = Array2::<f32>::zeros((m, n));
    general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        general_mat_mul(1.0, &a, &b, 0.0, &mut c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

pub fn bench(c: &mut Criterion) {
    if !selected() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let group = Group::builtin("trans2d", 14).unwrap();
    let net = Network::<f32>::new(
        &NetworkSpec::e2_paper(),
        group,
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .unwrap();
    let params = net.init_params(&mut rng);
    let mut grads = net.zeros();
    let flops = 3.0 * net.linear_flops_per_sample() as f64;

    let gemm = gemm_gflops(&mut rng, 2048, 2048, 2048, 3);
    let gemm_layer = gemm_gflops(&mut rng, 500, 6272, 6272, 2);
    eprintln!(
        "nn: reference f32 GEMM 2048^3: {gemm:.1} GFLOP/s; 500 x 6272 x 6272 (E2 layer 2): \
         {gemm_layer:.1} GFLOP/s; E2 paper network: {} parameters, {:.3} GFLOP per sample \
         (forward + backward)",
        net.num_params(),
        flops / 1e9
    );

    let mut g = c.benchmark_group("nn/e2_paper_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for chunk in [25usize, 500] {
        let x = random(&mut rng, chunk, net.input_width());
        let mut t = Array2::<f32>::zeros((chunk, 10));
        for i in 0..chunk {
            t[[i, rng.gen_range(0..10)]] = 1.0;
        }
        let mut ws = net.workspace(chunk);
        // Our own timing, printed: best of a few runs of ~`chunk`..1000 samples, interleaved
        // with the 2048^3 reference GEMM so that both see the same load on a shared machine.
        let reps = (1000 / chunk).max(1);
        net.loss_and_grad(&params, x.view(), t.view(), 25, &mut grads, &mut ws);
        let (mut best, mut best_gemm) = (f64::INFINITY, 0.0f64);
        for _ in 0..3 {
            let t0 = Instant::now();
            for _ in 0..reps {
                net.loss_and_grad(&params, x.view(), t.view(), 25, &mut grads, &mut ws);
            }
            best = best.min(t0.elapsed().as_secs_f64() / (reps * chunk) as f64);
            best_gemm = best_gemm.max(gemm_gflops(&mut rng, 2048, 2048, 2048, 1));
        }
        let gflops = flops / best / 1e9;
        eprintln!(
            "nn: E2 paper f32, chunk {chunk:>3} (mini-batch 25): {:.3} ms/sample, {gflops:.1} \
             GFLOP/s = {:.0}% of the interleaved 2048^3 GEMM ({best_gemm:.1} GFLOP/s)",
            best * 1e3,
            100.0 * gflops / best_gemm
        );
        g.throughput(Throughput::Elements(chunk as u64));
        g.bench_function(
            BenchmarkId::new("loss_and_grad", format!("chunk{chunk}")),
            |b| b.iter(|| net.loss_and_grad(&params, x.view(), t.view(), 25, &mut grads, &mut ws)),
        );
    }
    g.finish();
}
