//! The SGD protocol of E5: determinism, divergence detection, and docs/science.md §9's one-step
//! split (f64): from equivariant weights, one step on a batch closed under C_4 keeps the
//! compatible unitary model (cross) in E ∩ L to round-off, while skew and cross-nonunitary
//! leave it; on a batch not closed under C_4 even cross leaves it.

use eqaug_data::mnist_rotations::{self, Standardisation};
use eqaug_data::{Dataset, Targets};
use eqaug_dynamics::sgd::{sgd, ClassData, EpochRecord, SgdConfig, StepRecord};
use eqaug_nn::conv::{Parametrisation, Support};
use eqaug_nn::support_cnn::{SupportCnn, SupportCnnSpec};
use eqaug_nn::Params;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn class_data<T: eqaug_nn::Real>(d: &Dataset) -> ClassData<T> {
    let Targets::Classes { labels, classes } = &d.targets else {
        panic!("labels expected")
    };
    ClassData::new(d.x.view(), labels.clone(), *classes).unwrap()
}

/// Reduced channels (8, 16, 16) on the real 28 x 28 digits: the split does not depend on the
/// sizes, and the test stays fast.
fn spec(support: Support, param: Parametrisation) -> SupportCnnSpec {
    SupportCnnSpec {
        channels: [8, 16, 16],
        ..SupportCnnSpec::paper(support, param)
    }
}

fn run<T: eqaug_nn::Real>(
    net: &SupportCnn<T>,
    p: &mut Params<T>,
    train: &ClassData<T>,
    test: Option<&ClassData<T>>,
    cfg: &SgdConfig,
    seed: u64,
) -> (
    Vec<StepRecord>,
    Vec<EpochRecord>,
    eqaug_dynamics::sgd::SgdOutcome,
) {
    let (mut steps, mut epochs) = (Vec::new(), Vec::new());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out = sgd(
        net,
        p,
        train,
        test,
        cfg,
        &mut rng,
        &mut |s| steps.push(s.clone()),
        &mut |e, _| epochs.push(e.clone()),
    )
    .unwrap();
    (steps, epochs, out)
}

#[test]
fn sgd_is_deterministic_and_learns() {
    let d = mnist_rotations::load(None, Some(200), Some(100), Standardisation::Fixed).unwrap();
    let (train, test) = (class_data::<f32>(&d.train), class_data::<f32>(&d.test));
    let mut r = ChaCha8Rng::seed_from_u64(1);
    let net = SupportCnn::<f32>::new(&spec(Support::Cross, Parametrisation::Equivariant), &mut r)
        .unwrap();
    let p0 = net.init_params(&mut r);
    let cfg = SgdConfig::default()
        .with_learning_rate(2e-3)
        .with_batch_size(50)
        .with_epochs(2)
        .with_step_distances(true)
        .with_eval_chunk(64)
        .with_chunk_rows(None);
    let (mut p1, mut p2) = (p0.clone(), p0.clone());
    let (s1, e1, o1) = run(&net, &mut p1, &train, Some(&test), &cfg, 7);
    let (s2, e2, _) = run(&net, &mut p2, &train, Some(&test), &cfg, 7);
    assert_eq!((s1.len(), e1.len(), o1.steps), (8, 3, 8));
    assert!(o1.failure.is_none());
    assert_eq!(p1.as_slice(), p2.as_slice(), "same seed, different weights");
    assert_eq!(s1, s2);
    assert_eq!(e1, e2);
    // another shuffle seed gives other weights
    let mut p3 = p0.clone();
    run(&net, &mut p3, &train, Some(&test), &cfg, 8);
    assert_ne!(p1.as_slice(), p3.as_slice());
    // the loss goes down; the equivariant model stays in E ∩ L (its final layer projected)
    assert!(e1[2].train_loss < e1[0].train_loss, "{e1:?}");
    for s in &s1 {
        assert_eq!(s.distances.len(), 4);
        assert!(s.distances.iter().all(|&v| v < 1e-6), "{:?}", s.distances);
        assert!(s.grad_norm > 0.0 && s.grad_norm_kernel > 0.0);
    }
    assert!(e1.iter().all(|e| (0.0..=1.0).contains(&e.test_accuracy)));
}

/// Chunked steps (`chunk_rows`): each mini-batch of 40 in chunks of 15, 15 and 10 gives the
/// same training as whole mini-batches up to the order of the summation (f64: weights within
/// 1e-12 relative after two epochs, the same accuracies, losses within 1e-12), since the E5
/// network's layer norm acts per image.
#[test]
fn chunked_steps_equal_whole_minibatch_steps() {
    let d = mnist_rotations::load(None, Some(80), Some(20), Standardisation::Fixed).unwrap();
    let (train, test) = (class_data::<f64>(&d.train), class_data::<f64>(&d.test));
    let mut r = ChaCha8Rng::seed_from_u64(4);
    let net =
        SupportCnn::<f64>::new(&spec(Support::Cross, Parametrisation::Unitary), &mut r).unwrap();
    let p0 = net.init_params(&mut r);
    let whole = SgdConfig::default()
        .with_learning_rate(5e-3)
        .with_batch_size(40)
        .with_epochs(2)
        .with_step_distances(true)
        .with_eval_chunk(64)
        .with_chunk_rows(None);
    let chunked = whole.clone().with_chunk_rows(Some(15));
    let (mut p1, mut p2) = (p0.clone(), p0.clone());
    let (s1, e1, _) = run(&net, &mut p1, &train, Some(&test), &whole, 11);
    let (s2, e2, _) = run(&net, &mut p2, &train, Some(&test), &chunked, 11);
    let rel = p1.distance(&p2) / p1.distance(&p0);
    assert!(rel < 1e-12 && rel > 0.0, "{rel:e}");
    assert_eq!(s1.len(), s2.len());
    for (a, b) in s1.iter().zip(&s2) {
        assert_eq!(a.accuracy, b.accuracy);
        assert!(
            (a.loss - b.loss).abs() <= 1e-12 * a.loss.abs(),
            "{} vs {}",
            a.loss,
            b.loss
        );
    }
    for (a, b) in e1.iter().zip(&e2) {
        assert_eq!(a.train_accuracy, b.train_accuracy);
    }
    let bad = whole.with_chunk_rows(Some(0));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let err = sgd(
        &net,
        &mut p1,
        &train,
        None,
        &bad,
        &mut rng,
        &mut |_| {},
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("chunk_rows"), "{err}");
}

#[test]
fn divergence_is_reported_with_its_step() {
    let d = mnist_rotations::load(None, Some(40), Some(10), Standardisation::Fixed).unwrap();
    let train = class_data::<f32>(&d.train);
    let mut r = ChaCha8Rng::seed_from_u64(2);
    let net =
        SupportCnn::<f32>::new(&spec(Support::Skew, Parametrisation::Unitary), &mut r).unwrap();
    let mut p = net.init_params(&mut r);
    let cfg = SgdConfig::default()
        .with_learning_rate(1e30)
        .with_batch_size(10)
        .with_epochs(3)
        .with_step_distances(false)
        .with_eval_chunk(40)
        .with_chunk_rows(None);
    let (steps, _, out) = run(&net, &mut p, &train, None, &cfg, 3);
    let f = out.failure.expect("a learning rate of 1e30 must diverge");
    assert_eq!(f.epoch, 1);
    assert!(f.step <= 4, "{f:?}");
    // A non-finite weight is found after the step was recorded; a non-finite loss, or weights
    // grown beyond the divergence bound (while finite), before.
    assert_eq!(steps.len(), f.step - usize::from(f.what != "weights"));
    assert!(f.to_string().contains("epoch 1, step"), "{f}");
}

/// One step at lr 2.5e-4 from the (loaded) equivariant weights, f64: the distance to E ∩ L
/// after the step and the kernel-space distance moved, summed over the layers.
fn one_step(support: Support, param: Parametrisation, batch: &ClassData<f64>) -> (f64, f64) {
    let mut r = ChaCha8Rng::seed_from_u64(5);
    let eq = SupportCnn::<f64>::new(&spec(support.clone(), Parametrisation::Equivariant), &mut r)
        .unwrap();
    let peq = eq.init_params(&mut r);
    let net = SupportCnn::<f64>::new(&spec(support, param), &mut r).unwrap();
    let (mut p, _) = net.load_from_equivariant(&eq, &peq).unwrap();
    let k0 = net.kernels(&p);
    let w0 = p.tensor(3).data.to_vec();
    let d0: f64 = net
        .distances_to_e(&p)
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    assert!(d0 < 1e-12, "the loaded model starts in E ∩ L ({d0:e})");
    let cfg = SgdConfig::default()
        .with_learning_rate(2.5e-4)
        .with_batch_size(batch.len())
        .with_epochs(1)
        .with_step_distances(true)
        .with_eval_chunk(batch.len())
        .with_chunk_rows(None);
    let (steps, _, _) = run(&net, &mut p, batch, None, &cfg, 9);
    assert_eq!(steps.len(), 1);
    let dist = steps[0].distances.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut moved2: f64 = w0
        .iter()
        .zip(p.tensor(3).data)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    for (a, b) in k0.iter().zip(net.kernels(&p)) {
        moved2 += a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>();
    }
    (dist, moved2.sqrt())
}

#[test]
fn one_step_from_equivariant_weights_splits_as_spec_section_9() {
    let d = mnist_rotations::load(None, Some(25), Some(1), Standardisation::Fixed).unwrap();
    let open = class_data::<f64>(&d.train);
    let closed = class_data::<f64>(&mnist_rotations::with_rotations(&d.train).unwrap());
    let cases = [
        (
            "cross, closed",
            Support::Cross,
            Parametrisation::Unitary,
            &closed,
        ),
        (
            "skew, closed",
            Support::Skew,
            Parametrisation::Unitary,
            &closed,
        ),
        (
            "cross-nonunitary, closed",
            Support::Cross,
            Parametrisation::NonUnitary,
            &closed,
        ),
        (
            "cross, 25 digits",
            Support::Cross,
            Parametrisation::Unitary,
            &open,
        ),
    ];
    let mut ratio = Vec::new();
    for (name, support, param, batch) in cases {
        let (dist, moved) = one_step(support, param, batch);
        eprintln!(
            "{name}: distance to E ∩ L {dist:.3e}, moved {moved:.3e}, ratio {:.3e}",
            dist / moved
        );
        assert!(moved > 0.0);
        ratio.push(dist / moved);
    }
    // Bounds from the measured values (see the report): cross on the closed batch stays at
    // f64 round-off (measured ratio 2.6e-15), the others leave by a fraction of the
    // step of order 0.1 (measured 0.18 skew, 0.66 non-unitary, 0.11 cross on the open batch;
    // docs/science.md §9, paper sizes and other weights: 0.22 and 0.38).
    assert!(
        ratio[0] < 1e-12,
        "cross left E ∩ L on a C_4-closed batch: {:e}",
        ratio[0]
    );
    for (i, name) in [
        (1, "skew"),
        (2, "cross-nonunitary"),
        (3, "cross on 25 digits"),
    ] {
        assert!(
            ratio[i] > 1e-2,
            "{name} stayed in E ∩ L: ratio {:e}",
            ratio[i]
        );
        assert!(ratio[i] > 1e6 * ratio[0]);
    }
}
