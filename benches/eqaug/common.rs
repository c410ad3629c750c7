//! Shared by the bench modules: the paper-size networks, random data, the reference GEMM, and
//! the machine-readable record of our own timings (`EQAUG_BENCH_JSON=<file>` appends one JSON
//! object per line; `cargo xtask bench` reads it to write `reports/performance.md`).

use eqaug::groups::{Group, Rep};
use eqaug::nn::{Loss, Network, NetworkSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// One paper-size experiment network: its group, network, mini-batch and chunk rows.
pub struct Paper {
    pub id: &'static str,
    pub group: Arc<Group>,
    pub net: Network<f32>,
    pub minibatch: usize,
    pub chunk: usize,
}

/// The E1, E2 and E3 networks at paper size with the configs' mini-batches and chunks.
pub fn paper(id: &str) -> Paper {
    let (id, gname, n, spec, input, loss, minibatch, chunk) = match id {
        "e1" => (
            "e1",
            "perm",
            10,
            NetworkSpec::invariant_binary_classifier_paper(),
            Rep::base(1),
            Loss::Bce,
            200,
            1000,
        ),
        "e2" => (
            "e2",
            "trans2d",
            14,
            NetworkSpec::invariant_classifier_paper(),
            Rep::base(1),
            Loss::CrossEntropyOnProbabilities,
            25,
            500,
        ),
        "e3" => (
            "e3",
            "rot",
            14,
            NetworkSpec::equivariant_segmenter_paper(),
            Rep::base(1),
            Loss::SegmentationBce,
            25,
            500,
        ),
        other => panic!("no paper network {other}"),
    };
    let group = Group::builtin(gname, n).expect("builtin group");
    let net = Network::<f32>::new(&spec, group.clone(), input, loss).expect("paper network");
    Paper {
        id,
        group,
        net,
        minibatch,
        chunk,
    }
}

/// Random inputs in [-0.5, 0.5) and valid targets (0/1 entries; one-hot rows for the
/// cross-entropies). Timing does not depend on the values.
pub fn random_data(net: &Network<f32>, rows: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((rows, net.input_width()), |_| rng.gen_range(-0.5f32..0.5));
    let w = net.output_width();
    let mut t = Array2::<f32>::zeros((rows, w));
    for i in 0..rows {
        match net.loss_kind() {
            Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities => {
                t[[i, rng.gen_range(0..w)]] = 1.0
            }
            _ => t.row_mut(i).mapv_inplace(|_| rng.gen_range(0..2) as f32),
        }
    }
    (x, t)
}

/// Operands of a square f32 GEMM (the ceiling: the same `general_mat_mul` path as the layers).
pub struct Gemm {
    a: Array2<f32>,
    b: Array2<f32>,
    c: Array2<f32>,
}

impl Gemm {
    pub const N: usize = 2048;

    pub fn new() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = Self::N;
        let mut r = |_| rng.gen_range(-1.0f32..1.0);
        Gemm {
            a: Array2::from_shape_fn((n, n), &mut r),
            b: Array2::from_shape_fn((n, n), &mut r),
            c: Array2::zeros((n, n)),
        }
    }

    pub fn run(&mut self) {
        general_mat_mul(1.0, &self.a, &self.b, 0.0, &mut self.c);
    }

    pub fn flops() -> f64 {
        2.0 * (Self::N as f64).powi(3)
    }

    /// GFLOP/s of the best of `reps` products.
    pub fn gflops(&mut self, reps: usize) -> f64 {
        let best = best_of(reps, || self.run());
        Self::flops() / best / 1e9
    }
}

/// The shortest of `reps` timings of `f` (after one untimed call), in seconds.
pub fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Appends `json` as one line to the file named by `EQAUG_BENCH_JSON`, if set.
pub fn record(json: serde_json::Value) {
    if let Some(path) = std::env::var_os("EQAUG_BENCH_JSON") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("cannot open EQAUG_BENCH_JSON");
        writeln!(f, "{json}").expect("cannot write EQAUG_BENCH_JSON");
    }
}

/// Whether the criterion filters on the command line (if any) select names starting with
/// `prefix` (lets `cargo bench -- projection` skip the expensive set-ups of other modules).
pub fn selected(prefix: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| prefix.contains(f.as_str()) || f.contains(prefix))
}
