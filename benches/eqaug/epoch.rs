//! One epoch per strategy (nominal, augmented with L = 25 passes drawn per mini-batch,
//! equivariant) for E1 at paper size (1000 graphs) and for E2 with the paper's network on 1000
//! samples; and the cost of the per-epoch bookkeeping (the metrics of every epoch and the
//! projection of the equivariant gradient) on paper-size parameters of every experiment.
//!
//! An epoch is what `eqaug_dynamics::train` does per step: the strategy's full-batch gradient,
//! the step, and the metrics. Our own timing (printed and recorded) is the best of a few
//! epochs; criterion re-times the cheap ones with `iter_custom`. The E2 augmented epoch
//! (about 25 s) is left out of criterion unless `EQAUG_BENCH_FULL=1` (criterion wants at least
//! 10 samples).

use crate::common::{best_of, paper, random_data, record, selected, Paper};
use criterion::Criterion;
use eqaug::dynamics::{EpochMetrics, Protocol, Sampling, StrategySpec, TrainData, Trainer};
use eqaug::groups::{Group, ReferenceTask, Rep};
use eqaug::nn::{Loss, Network, NetworkSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::time::{Duration, Instant};

/// A strategy's epoch on `data`: gradient, step and metrics, as in `train`.
struct EpochRunner<'a> {
    trainer: Trainer<'a, f32>,
    a0: eqaug::nn::Params<f32>,
    params: eqaug::nn::Params<f32>,
    rng: ChaCha8Rng,
}

impl EpochRunner<'_> {
    fn epoch(&mut self, s: &StrategySpec) {
        let loss = self
            .trainer
            .gradient(&self.params, s, &mut self.rng)
            .expect("gradient");
        self.params.axpy(-1e-5, self.trainer.grads());
        std::hint::black_box(EpochMetrics::measure(
            0,
            &s.name,
            loss,
            &self.params,
            &self.a0,
        ));
    }
}

fn strategies() -> [StrategySpec; 3] {
    [
        StrategySpec::nominal(),
        StrategySpec::augmented(25, Sampling::PerBatch),
        StrategySpec::equivariant(),
    ]
}

fn epochs(c: &mut Criterion, p: &Paper, samples: usize, label: &str) {
    let (x, targets) = random_data(&p.net, samples, 2);
    let data = TrainData {
        x,
        targets,
        input_rep: p.net.input_rep(),
        target_rep: (p.net.output_rep().points == eqaug::groups::Points::Base)
            .then(|| p.net.output_rep()),
    };
    let protocol = Protocol::default()
        .with_epochs(1)
        .with_learning_rate(1e-5)
        .with_minibatch(p.minibatch)
        .with_chunk_rows(p.chunk)
        .with_reference_task(ReferenceTask::Classification);
    let a0 = p.net.init_params(&mut ChaCha8Rng::seed_from_u64(0));
    let mut run = EpochRunner {
        trainer: Trainer::new(&p.net, &data, protocol).expect("trainer"),
        params: a0.clone(),
        a0,
        rng: ChaCha8Rng::seed_from_u64(3),
    };
    let mut g = c.benchmark_group(format!("epoch/{label}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(2));
    let full = std::env::var_os("EQAUG_BENCH_FULL").is_some();
    let mut nominal = f64::NAN;
    for s in strategies() {
        let passes = s.passes;
        let cost = p.net.linear_flops_per_sample() as f64 * 3.0 * (samples * passes) as f64;
        // Best of ~3 s of epochs: at least one, at most 3.
        let mut timed = || {
            let t = Instant::now();
            run.epoch(&s);
            t.elapsed().as_secs_f64()
        };
        let one = timed();
        let reps = ((3.0 / one) as usize).clamp(1, 3);
        let secs = (1..reps).map(|_| timed()).fold(one, f64::min);
        if s.name == "nominal" {
            nominal = secs;
        }
        eprintln!(
            "epoch: {label} {:<11} {secs:8.3} s/epoch ({:.2} x nominal{}), {:.1} GFLOP/s",
            s.name,
            secs / nominal,
            if passes > 1 {
                format!(", {:.3} x L x nominal", secs / nominal / passes as f64)
            } else {
                String::new()
            },
            cost / secs / 1e9
        );
        record(json!({
            "kind": "epoch", "experiment": p.id, "label": label, "samples": samples,
            "strategy": s.name, "passes": passes, "seconds": secs,
        }));
        if one * 11.0 < 60.0 || full {
            g.bench_function(s.name.as_str(), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        run.epoch(&s);
                    }
                    t.elapsed()
                })
            });
        }
    }
    g.finish();
}

/// The per-epoch bookkeeping on paper-size parameters: `EpochMetrics::measure` (every epoch of
/// every strategy) and the projection of the gradient (equivariant strategy), best of 5.
fn overhead(experiment: &str, group: &str, net: &Network<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a0 = net.init_params(&mut rng);
    let mut params = a0.clone();
    // Move off E so that the distances are not trivially zero.
    for v in params.as_mut_slice() {
        *v += 1e-3 * (rand::Rng::gen_range(&mut rng, -1.0f32..1.0));
    }
    let metrics = best_of(5, || {
        std::hint::black_box(EpochMetrics::measure(0, "s", 0.0, &params, &a0));
    });
    let mut grads = params.clone();
    let project = best_of(5, || {
        grads.copy_from(&params);
        grads.project_group_layers();
    });
    eprintln!(
        "overhead: {experiment} ({group}): metrics {:.2} ms, projection {:.2} ms per epoch",
        metrics * 1e3,
        project * 1e3
    );
    record(json!({
        "kind": "overhead", "experiment": experiment, "group": group,
        "metrics_seconds": metrics, "projection_seconds": project,
    }));
}

pub fn bench(c: &mut Criterion) {
    if !selected("epoch/") {
        return;
    }
    let e1 = paper("e1");
    overhead("e1", "perm", &e1.net);
    epochs(c, &e1, 1000, "invariant_binary_classifier_paper");
    let e2 = paper("e2");
    overhead("e2", "trans2d", &e2.net);
    epochs(c, &e2, 1000, "e2_paper_1000");
    drop(e2);
    overhead("e3", "rot", &paper("e3").net);
    for g in ["rot", "trans2d", "trans1d", "rototrans"] {
        let net = Network::<f32>::new(
            &NetworkSpec::invariant_classifier_paper(),
            Group::builtin(g, 14).expect("group"),
            Rep::base(1),
            Loss::CrossEntropyOnProbabilities,
        )
        .expect("E4 network");
        overhead("e4", g, &net);
    }
}
