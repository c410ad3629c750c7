//! Forward + backward per sample of the paper-size E1, E2 and E3 networks in f32, in the
//! chunks the experiment configs use (E1: 1000 rows, mini-batch 200; E2 and E3: 500 rows,
//! mini-batch 25; E2 also in chunks of one mini-batch, 25 rows), and a 2048^3 f32 GEMM through
//! the same `general_mat_mul` path as the ceiling.
//!
//! Besides criterion's timings it prints (and records, see `common::record`) ms per sample and
//! the effective GFLOP/s = 3 x 2 x (multiply-adds of the linear layers) per second, against the
//! GEMM timed interleaved with it, so both see the same load on a shared machine.

use crate::common::{best_of, paper, random_data, record, selected, Gemm};
use criterion::{BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::time::Duration;

pub fn bench(c: &mut Criterion) {
    if !selected("nn/") {
        return;
    }
    let mut gemm = Gemm::new();
    let mut group = c.benchmark_group("nn");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(Gemm::flops() as u64));
    group.bench_function("gemm_f32_2048", |b| b.iter(|| gemm.run()));
    let ceiling = gemm.gflops(3);
    eprintln!("nn: f32 GEMM 2048^3 ceiling: {ceiling:.1} GFLOP/s");
    record(json!({"kind": "gemm", "n": Gemm::N, "gflops": ceiling}));

    for (id, chunk) in [("e1", 1000), ("e2", 25), ("e2", 500), ("e3", 500)] {
        let p = paper(id);
        let net = &p.net;
        let params = net.init_params(&mut ChaCha8Rng::seed_from_u64(0));
        let mut grads = net.zeros();
        let (x, t) = random_data(net, chunk, 1);
        let mut ws = net.workspace(chunk);
        let flops = 3.0 * net.linear_flops_per_sample() as f64;
        let mut pass = || {
            net.accumulate_loss_and_grad(
                &params,
                x.view(),
                t.view(),
                p.minibatch,
                &mut grads,
                &mut ws,
            )
            .unwrap();
        };
        // Our own timing: best of 3 of about 1000 samples, each followed by one GEMM.
        let reps = (1000 / chunk).max(1);
        let (mut best, mut best_gemm) = (f64::INFINITY, 0.0f64);
        for _ in 0..3 {
            let s = best_of(1, || (0..reps).for_each(|_| pass()));
            best = best.min(s / (reps * chunk) as f64);
            best_gemm = best_gemm.max(gemm.gflops(1));
        }
        let gflops = flops / best / 1e9;
        eprintln!(
            "nn: {id} paper f32, chunk {chunk:>4} (mini-batch {}): {:.3} ms/sample, {gflops:.1} \
             GFLOP/s = {:.0}% of the interleaved 2048^3 GEMM ({best_gemm:.1} GFLOP/s); {} \
             parameters, {:.3} GFLOP per sample-pass",
            p.minibatch,
            best * 1e3,
            100.0 * gflops / best_gemm,
            net.num_params(),
            flops / 1e9
        );
        let g = &p.group;
        let act_floats: usize = net.reps()[1..].iter().map(|r| r.dim(g)).sum();
        record(json!({
            "activation_bytes": 4 * chunk * act_floats,
            "kind": "pass", "experiment": id, "chunk": chunk, "minibatch": p.minibatch,
            "params": net.num_params(), "flops_per_sample": flops,
            "ms_per_sample": best * 1e3, "gflops": gflops, "gemm_gflops": best_gemm,
        }));
        group.throughput(Throughput::Elements(chunk as u64));
        group.bench_function(
            BenchmarkId::new(
                format!("{id}_paper_f32/loss_and_grad"),
                format!("chunk{chunk}"),
            ),
            |b| b.iter(&mut pass),
        );
    }
    group.finish();
}
