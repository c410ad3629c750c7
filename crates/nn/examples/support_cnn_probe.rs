//! Profiling probe: the support CNN of E5 (paper size, f32) per sample-pass and each of its
//! convolutions alone, against a 2048^3 f32 GEMM timed in the same run. Usage:
//! `cargo run --release -p eqaug-nn --example support_cnn_probe [chunk]` (default 100 rows).
use eqaug_nn::conv::{
    conv2d_backward, conv2d_forward, ConvScratch, ConvShape, Parametrisation, Support,
};
use eqaug_nn::support_cnn::{SupportCnn, SupportCnnSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n = 2048;
    let a = Array2::from_shape_fn((n, n), |_| rng.gen_range(-1.0f32..1.0));
    let b = Array2::from_shape_fn((n, n), |_| rng.gen_range(-1.0f32..1.0));
    let mut c = Array2::<f32>::zeros((n, n));
    let mut gemm = || {
        2.0 * (n as f64).powi(3) / best_of(1, || general_mat_mul(1.0, &a, &b, 0.0, &mut c)) / 1e9
    };
    let chunk: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100);
    for param in [Parametrisation::Equivariant, Parametrisation::Unitary] {
        let net = SupportCnn::<f32>::new(&SupportCnnSpec::paper(Support::Cross, param), &mut rng)
            .unwrap();
        let seq = net.sequential();
        let p = net.init_params(&mut rng);
        let mut g = net.zeros();
        let x = Array2::from_shape_fn((chunk, 784), |_| rng.gen_range(-1.0f32..1.0));
        let mut t = Array2::<f32>::zeros((chunk, 10));
        for i in 0..chunk {
            t[[i, i % 10]] = 1.0;
        }
        let mut ws = seq.workspace(chunk);
        let fl = 3.0 * net.flops_per_sample() as f64;
        for _ in 0..2 {
            let s = best_of(3, || {
                seq.accumulate_loss_and_grad(&p, x.view(), t.view(), chunk, &mut g, &mut ws)
                    .unwrap();
            }) / chunk as f64;
            let gg = gemm();
            println!("{param:?} chunk {chunk}: {:.3} ms/sample, {:.1} GFLOP/s = {:.0}% of GEMM {gg:.1}; fwd {:.1} MFLOP", s*1e3, fl/s/1e9, 100.0*fl/s/1e9/gg, fl/3e6);
        }
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
        let mut sc = ConvScratch::new();
        let first = i == 0;
        for _ in 0..2 {
            let tf =
                best_of(3, || conv2d_forward(&s, &x, &k, &mut y, chunk, &mut sc)) / chunk as f64;
            let tb = best_of(3, || {
                conv2d_backward(
                    &s,
                    &x,
                    &k,
                    &dy,
                    &mut dk,
                    (!first).then_some(&mut dx[..]),
                    chunk,
                    &mut sc,
                )
            }) / chunk as f64;
            let f = s.flops_per_sample() as f64;
            let gg = gemm();
            let passes = if first { 1.0 } else { 2.0 };
            println!("conv{} fwd {:.4} ms/sample {:.1} GFLOP/s ({:.0}%), bwd {:.4} ms {:.1} GFLOP/s ({:.0}%), GEMM {gg:.1}", i+1, tf*1e3, f/tf/1e9, 100.0*f/tf/1e9/gg, tb*1e3, passes*f/tb/1e9, 100.0*passes*f/tb/1e9/gg);
        }
    }
}
