//! The E5 part of `reports/performance.md`: the CNN's forward + backward per sample against
//! the GEMM ceiling timed in the same run, each convolution alone, and the projected wall
//! time of the paper profile (records `e5_pass` and `e5_conv` of benches/eqaug/e5.rs).

use serde_json::Value;
use std::fmt::Write as _;

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// Sample-passes (forward + backward) of one E5 run and forward-only passes, for `train`
/// training and `test` test digits: phase 1 on the training set for each of the 2 supports,
/// phase 2 on its 4 rotations for each of the 3 cases, the test set evaluated after every
/// epoch of both phases and the training set once at the start of each phase.
pub fn passes_per_run(train: f64, test: f64, epochs1: f64, epochs2: f64) -> (f64, f64) {
    let train_passes = 2.0 * epochs1 * train + 3.0 * epochs2 * 4.0 * train;
    let eval = (2.0 * epochs1 + 3.0 * epochs2) * test + 2.0 * train + 3.0 * 4.0 * train;
    (train_passes, eval)
}

/// The markdown section; empty when the benches wrote no E5 record.
pub fn section(records: &[Value]) -> String {
    let pass: Vec<&Value> = records.iter().filter(|r| r["kind"] == "e5_pass").collect();
    let conv: Vec<&Value> = records.iter().filter(|r| r["kind"] == "e5_conv").collect();
    if pass.is_empty() && conv.is_empty() {
        return String::new();
    }
    let mut w = String::new();
    let _ = writeln!(
        w,
        "\n## E5: the CNN (docs/science.md §9)\n\nf32, paper sizes (channels 32-64-64, 28 x 28, \
         kernel support cross), chunks of 50 images as the runner uses (`protocol.chunk_rows`: \
         each SGD mini-batch of 100 in two forward and backward passes, gradients summed). \
         GFLOP/s = FLOPs per sample-pass / time, counting 2 x the multiply-adds of all 9 \
         offsets (the convolutions compute with the full 3 x 3 kernel, so the 4 \
         offsets outside the cross support are computed and counted): for the network 3 \
         passes (forward, kernel gradient, input gradient) of the convolutions and the final \
         layer; for each convolution alone 3 passes, 2 for conv1 (the first layer's input \
         gradient is not needed and not computed). Ceilings timed interleaved with each row: \
         a 2048^3 f32 GEMM (the target: at least 60% of it for the convolutions) and, per \
         convolution, the f32 GEMM of its own forward shape `(50 h w) x (9 c_in) x c_out` \
         (the same library, the im2col operand column-major as in the forward pass). conv1 has \
         one input channel: as an im2col GEMM its inner dimension would be 9, which keeps even \
         the same-shape GEMM far below the 2048^3 rate, so conv1 is computed directly from \
         cache: per image, three column-shifted copies of the image with a zero row above and \
         below (10 KB) hold the 9 shifted images as contiguous windows; the forward pass forms \
         every output map in vector registers (9 fused multiply-adds per 8 positions with the \
         9 kernel values in registers, 6 vectors in flight, one map after the other while the \
         shifted copies stay in L1 cache) and the kernel \
         gradient accumulates 4 output channels x the 3 offsets of one kernel row in 12 vector \
         registers (7 loads per 12 fused multiply-adds); images run in parallel. From cache, \
         both loops are bound by arithmetic. What goes through memory is the output and the \
         output gradient, 100 KB each per image: at chunks of 100 images (10 MB each) they do \
         not both stay in the last-level cache (32 MB, shared with the rest of the machine) and \
         conv1 measured 49% of the ceiling, at chunks of 50 they do (77%), and the whole \
         network is faster per image too, which is why the runner splits each mini-batch. Like matrixmultiply's GEMM kernels, these \
         loops are chosen at run time: AVX2 + FMA when the CPU has them (f32 by vector \
         intrinsics), portable code otherwise. The workspace is built for the x86_64 baseline \
         (SSE2, no FMA) so that its binaries run on any x86_64 CPU; compiled only for that \
         baseline (4-wide, separate multiply and add), conv1's loops held it at about 20% of \
         the ceiling before. conv2 and conv3 run im2col + GEMM in blocks of at most 1 Mi \
         im2col entries (4 MB: 17 and 34 images per block), so that \
         a block's im2col is still in cache when the GEMM packs it.\n"
    );
    let _ = writeln!(
        w,
        "| part | chunk | MFLOP per sample-pass | ms per sample-pass | GFLOP/s | GEMM 2048^3 \
         GFLOP/s (same time) | % of it | same-shape GEMM GFLOP/s (same time) | % of it | \
         target (>= 60% of GEMM 2048^3) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &pass {
        let _ = writeln!(
            w,
            "| whole network, {} model | {} | {:.1} | {:.3} | {:.1} | {:.1} | {:.0}% | - | - | \
             (info) |",
            r["model"].as_str().unwrap_or("?"),
            r["chunk"],
            f(r, "flops_per_sample") / 1e6,
            f(r, "ms_per_sample"),
            f(r, "gflops"),
            f(r, "gemm_gflops"),
            100.0 * f(r, "gflops") / f(r, "gemm_gflops")
        );
    }
    for r in &conv {
        let share = 100.0 * f(r, "gflops") / f(r, "gemm_gflops");
        let (shape, shape_share) = match r["shape_gemm_gflops"].as_f64() {
            Some(g) => (
                format!("{g:.1}"),
                format!("{:.0}%", 100.0 * f(r, "gflops") / g),
            ),
            None => ("no data".into(), "no data".into()),
        };
        let verdict = if share.is_nan() {
            "no data"
        } else if share >= 60.0 {
            "met"
        } else {
            "not met"
        };
        let _ = writeln!(
            w,
            "| conv{} ({} -> {}, {} x {}) | {} | {:.2} | {:.4} | {:.1} | {:.1} | {share:.0}% | \
             {shape} | {shape_share} | {verdict} |",
            r["layer"],
            r["c_in"],
            r["c_out"],
            r["side"],
            r["side"],
            r["chunk"],
            f(r, "flops_per_sample") / 1e6,
            f(r, "ms_per_sample"),
            f(r, "gflops"),
            f(r, "gemm_gflops"),
        );
    }
    // Phase 1 runs the equivariant model, phase 2 the unitary one; a forward-only pass costs
    // about a third of a forward + backward pass.
    let ms = |model: &str| {
        pass.iter()
            .find(|r| r["model"] == model)
            .map_or(f64::NAN, |r| f(r, "ms_per_sample"))
    };
    let (eq, un) = (ms("equivariant"), ms("unitary"));
    let run_secs = |train: f64, test: f64| {
        let p1 = 2.0 * 250.0 * train * eq;
        let p2 = 3.0 * 10.0 * 4.0 * train * un;
        let (_, eval) = passes_per_run(train, test, 250.0, 10.0);
        (p1 + p2 + eval * un / 3.0) / 1e3
    };
    let _ = writeln!(
        w,
        "\nProjected wall time of `experiments/e5.toml --profile paper` on this machine, runs \
         one after the other: per run, phase 1 (250 epochs) for the supports cross and skew \
         (cross-nonunitary shares cross's), phase 2 (10 epochs on the 4 rotations) for the \
         three cases, the test set after every epoch (forward only, ~1/3 of a pass), at the \
         measured ms per sample-pass (phase 1: equivariant model, phase 2: unitary).\n"
    );
    let _ = writeln!(w, "| data | per run | 30 runs |\n|---|---|---|");
    for (label, train, test) in [
        (
            "official 60 000 / 10 000 (`data.mnist_dir`)",
            60000.0,
            10000.0,
        ),
        ("shipped split 8 000 / 2 000 (default)", 8000.0, 2000.0),
    ] {
        let s = run_secs(train, test);
        let _ = writeln!(
            w,
            "| {label} | {:.1} h | {:.0} h |",
            s / 3600.0,
            30.0 * s / 3600.0
        );
    }
    w
}

#[cfg(test)]
mod tests {
    use super::section;
    use serde_json::json;

    #[test]
    fn the_section_shows_the_share_of_gemm_and_the_projection() {
        assert_eq!(section(&[json!({"kind": "gemm", "gflops": 50.0})]), "");
        let records = [
            json!({"kind": "e5_pass", "model": "equivariant", "chunk": 100,
                   "flops_per_sample": 2.0e7, "ms_per_sample": 1.0, "gflops": 20.0,
                   "gemm_gflops": 40.0}),
            json!({"kind": "e5_pass", "model": "unitary", "chunk": 100,
                   "flops_per_sample": 2.0e7, "ms_per_sample": 1.0, "gflops": 20.0,
                   "gemm_gflops": 40.0}),
            json!({"kind": "e5_conv", "layer": 2, "c_in": 32, "c_out": 64, "side": 14,
                   "chunk": 100, "flops_per_sample": 1.0e7, "ms_per_sample": 0.3,
                   "gflops": 33.0, "gemm_gflops": 44.0, "shape_gemm_gflops": 40.0}),
            json!({"kind": "e5_conv", "layer": 1, "c_in": 1, "c_out": 32, "side": 28,
                   "chunk": 100, "flops_per_sample": 1.0e6, "ms_per_sample": 0.1,
                   "gflops": 10.0, "gemm_gflops": 40.0}),
        ];
        let s = section(&records);
        assert!(s.starts_with("\n## E5: the CNN"), "{s}");
        assert!(
            s.contains(
                "| whole network, equivariant model | 100 | 20.0 | 1.000 | 20.0 | 40.0 | 50% | - \
                 | - | (info) |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| conv2 (32 -> 64, 14 x 14) | 100 | 10.00 | 0.3000 | 33.0 | 44.0 | 75% | 40.0 \
                 | 82% | met |"
            ),
            "{s}"
        );
        // a record without the same-shape GEMM (an older bench) says so
        assert!(
            s.contains(
                "| conv1 (1 -> 32, 28 x 28) | 100 | 1.00 | 0.1000 | 10.0 | 40.0 | 25% | no data \
                 | no data | not met |"
            ),
            "{s}"
        );
        // 1 ms per sample-pass, shipped split: phase 1 2 x 250 x 8000, phase 2 3 x 10 x 4 x
        // 8000 passes, evaluation (2 x 250 + 3 x 10) x 2000 + 14 x 8000 forward passes at 1/3.
        let secs = (2.0 * 250.0 * 8000.0
            + 3.0 * 40.0 * 8000.0
            + ((2.0 * 250.0 + 30.0) * 2000.0 + 14.0 * 8000.0) / 3.0)
            / 1e3;
        let row = format!(
            "| shipped split 8 000 / 2 000 (default) | {:.1} h | {:.0} h |",
            secs / 3600.0,
            30.0 * secs / 3600.0
        );
        assert!(s.contains(&row), "{row}\n{s}");
    }
}
