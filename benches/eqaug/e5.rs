//! E5 (the CNN of docs/science.md §9) in f32 at paper size: forward + backward of the whole
//! network per sample in chunks of 50 rows (the E5 runner's `protocol.chunk_rows`: each SGD
//! mini-batch of 100 in two passes), for the equivariant and the
//! unitary cross model, and each convolution alone (conv2 and conv3: im2col + GEMM forward,
//! two GEMMs + col2im backward; conv1, one input channel: computed directly from cache), against
//! the 2048^3 f32 GEMM timed interleaved with them.
//!
//! GFLOP/s = 3 x 2 x (multiply-adds of the convolutions and the final layer) per second for
//! the network (the backward of the first convolution skips its input gradient, so this
//! slightly overstates the work there); for each convolution alone, 3 (2 for the first, whose
//! input gradient is not computed) x 2 x its multiply-adds (all 9 offsets). Each convolution
//! also gets a second ceiling: the f32 GEMM of its own forward shape, `(chunk h w) x (9 c_in)
//! x c_out`, timed interleaved with it (for the first layer, inner dimension 9, that GEMM is
//! far below the 2048^3 one).

use crate::common::{best_of, record, selected, Gemm};
use criterion::{BenchmarkId, Criterion, Throughput};
use eqaug::nn::conv::{
    conv2d_backward, conv2d_forward, ConvScratch, ConvShape, Parametrisation, Support,
};
use eqaug::nn::support_cnn::{SupportCnn, SupportCnnSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::time::Duration;

/// Rounds of (the timed part, best of 2; the ceilings) interleaved: the best of each over
/// the rounds, so that both are taken at the quietest moments of a shared machine.
const ROUNDS: usize = 6;

pub fn bench(c: &mut Criterion) {
    if !selected("e5/") {
        return;
    }
    let mut gemm = Gemm::new();
    let mut group = c.benchmark_group("e5");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // The E5 runner's default `protocol.chunk_rows` (experiments/e5.toml).
    let chunk = 50;

    for (name, param) in [
        ("equivariant", Parametrisation::Equivariant),
        ("unitary", Parametrisation::Unitary),
    ] {
        let net = SupportCnn::<f32>::new(&SupportCnnSpec::paper(Support::Cross, param), &mut rng)
            .expect("e5");
        let seq = net.sequential();
        let params = net.init_params(&mut rng);
        let mut grads = net.zeros();
        let x = Array2::from_shape_fn((chunk, 784), |_| rng.gen_range(-1.0f32..1.0));
        let mut t = Array2::<f32>::zeros((chunk, 10));
        for i in 0..chunk {
            t[[i, i % 10]] = 1.0;
        }
        let mut ws = seq.workspace(chunk);
        let flops = 3.0 * net.flops_per_sample() as f64;
        let mut pass = || {
            seq.accumulate_loss_and_grad(&params, x.view(), t.view(), chunk, &mut grads, &mut ws)
                .unwrap();
        };
        let (mut best, mut best_gemm) = (f64::INFINITY, 0.0f64);
        for _ in 0..ROUNDS {
            best = best.min(best_of(2, &mut pass) / chunk as f64);
            best_gemm = best_gemm.max(gemm.gflops(1));
        }
        let gflops = flops / best / 1e9;
        eprintln!(
            "e5: cross {name} f32, chunk {chunk}: {:.3} ms/sample, {gflops:.1} GFLOP/s = {:.0}% \
             of the interleaved GEMM ({best_gemm:.1} GFLOP/s); {:.1} MFLOP per sample-pass",
            best * 1e3,
            100.0 * gflops / best_gemm,
            flops / 1e6
        );
        record(json!({
            "kind": "e5_pass", "model": name, "chunk": chunk, "params": net.sequential().num_params(),
            "flops_per_sample": flops, "ms_per_sample": best * 1e3, "gflops": gflops,
            "gemm_gflops": best_gemm,
        }));
        group.throughput(Throughput::Elements(chunk as u64));
        group.bench_function(
            BenchmarkId::new(format!("cross_{name}_f32/loss_and_grad"), chunk),
            |b| b.iter(&mut pass),
        );
    }

    for (i, s) in [
        ConvShape {
            c_in: 1,
            c_out: 32,
            h: 28,
            w: 28,
        },
        ConvShape {
            c_in: 32,
            c_out: 64,
            h: 14,
            w: 14,
        },
        ConvShape {
            c_in: 64,
            c_out: 64,
            h: 7,
            w: 7,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let x: Vec<f32> = (0..chunk * s.input_width())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let k: Vec<f32> = (0..s.kernel_len())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let dy: Vec<f32> = (0..chunk * s.output_width())
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let mut y = vec![0.0f32; chunk * s.output_width()];
        let mut dk = vec![0.0f32; s.kernel_len()];
        let mut dx = vec![0.0f32; chunk * s.input_width()];
        let mut scratch = ConvScratch::new();
        let first = i == 0;
        let mut pass = || {
            conv2d_forward(&s, &x, &k, &mut y, chunk, &mut scratch);
            conv2d_backward(
                &s,
                &x,
                &k,
                &dy,
                &mut dk,
                (!first).then_some(&mut dx[..]),
                chunk,
                &mut scratch,
            );
        };
        let passes = if first { 2.0 } else { 3.0 };
        let flops = passes * s.flops_per_sample() as f64;
        // the same-shape GEMM: C (m x c_out) = A (m x 9 c_in) B, A stored column-major (as
        // the forward pass's im2col), m = chunk h w
        let (m, kk) = (chunk * s.h * s.w, 9 * s.c_in);
        let a = Array2::from_shape_fn((m, kk).f(), |_| rng.gen_range(-1.0f32..1.0));
        let b = Array2::from_shape_fn((kk, s.c_out), |_| rng.gen_range(-1.0f32..1.0));
        let mut c = Array2::<f32>::zeros((m, s.c_out));
        let shape_flops = 2.0 * (m * kk * s.c_out) as f64;
        let (mut best, mut best_gemm, mut best_shape) = (f64::INFINITY, 0.0f64, 0.0f64);
        for _ in 0..ROUNDS {
            best = best.min(best_of(2, &mut pass) / chunk as f64);
            best_gemm = best_gemm.max(gemm.gflops(1));
            let t = best_of(3, || general_mat_mul(1.0, &a, &b, 0.0, &mut c));
            best_shape = best_shape.max(shape_flops / t / 1e9);
        }
        let gflops = flops / best / 1e9;
        eprintln!(
            "e5: conv{} {s:?} f32, chunk {chunk}: {:.4} ms/sample, {gflops:.1} GFLOP/s = {:.0}% of \
             the interleaved GEMM ({best_gemm:.1} GFLOP/s), {:.0}% of the same-shape GEMM \
             {m} x {kk} x {} ({best_shape:.1} GFLOP/s)",
            i + 1,
            best * 1e3,
            100.0 * gflops / best_gemm,
            100.0 * gflops / best_shape,
            s.c_out
        );
        record(json!({
            "kind": "e5_conv", "layer": i + 1, "c_in": s.c_in, "c_out": s.c_out, "side": s.h,
            "chunk": chunk, "flops_per_sample": flops, "ms_per_sample": best * 1e3,
            "gflops": gflops, "gemm_gflops": best_gemm, "shape_gemm_gflops": best_shape,
            "input_gradient": !first,
        }));
        group.bench_function(
            BenchmarkId::new(format!("conv{}_f32/fwd_bwd", i + 1), chunk),
            |b| b.iter(&mut pass),
        );
    }
    group.finish();
}
