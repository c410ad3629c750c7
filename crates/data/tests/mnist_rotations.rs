//! The standardised MNIST split of E5: the fixed split of the shipped digits, standardisation, and the C_4 orbit.

use eqaug_data::mnist::{self, MNIST_MEAN, MNIST_STD};
use eqaug_data::mnist_rotations::{self, Standardisation, SHIPPED_TRAIN};
use eqaug_data::Targets;

fn labels(t: &Targets) -> &[usize] {
    match t {
        Targets::Classes { labels, .. } => labels,
        _ => panic!("class labels expected"),
    }
}

#[test]
fn shipped_split_and_fixed_standardisation() {
    let all = mnist::load_shipped().unwrap();
    let d = mnist_rotations::load(None, None, None, Standardisation::Fixed).unwrap();
    assert_eq!(d.train.len(), SHIPPED_TRAIN);
    assert_eq!(d.test.len(), all.len() - SHIPPED_TRAIN);
    assert_eq!(d.train.features(), 784);
    assert_eq!((d.mean, d.std), (MNIST_MEAN, MNIST_STD));
    // first training digit and first test digit, pixel by pixel
    for (ds, i) in [(&d.train, 0usize), (&d.test, SHIPPED_TRAIN)] {
        let img = all.image(i);
        let row = ds.x.row(i - if i == 0 { 0 } else { SHIPPED_TRAIN });
        for (v, &p) in row.iter().zip(img) {
            assert!((v - (p as f64 / 255.0 - MNIST_MEAN) / MNIST_STD).abs() < 1e-12);
        }
    }
    assert_eq!(
        labels(&d.test.targets)[0],
        all.labels[SHIPPED_TRAIN] as usize
    );
    assert!(d.source.contains("first 8000"), "{}", d.source);
    // counts
    let small =
        mnist_rotations::load(None, Some(30), Some(20), Standardisation::TrainingSet).unwrap();
    assert_eq!((small.train.len(), small.test.len()), (30, 20));
    let n = small.train.x.len() as f64;
    let mean = small.train.x.sum() / n;
    let var = small
        .train
        .x
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum::<f64>()
        / n;
    assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
    assert!(mnist_rotations::load(None, Some(0), None, Standardisation::Fixed).is_err());
}

#[test]
fn the_c4_orbit_holds_all_four_rotations() {
    let d = mnist_rotations::load(None, Some(5), Some(1), Standardisation::Fixed).unwrap();
    let aug = mnist_rotations::with_rotations(&d.train).unwrap();
    assert_eq!(aug.len(), 20);
    assert_eq!(labels(&aug.targets)[..5], labels(&aug.targets)[15..]);
    let n = 28;
    for i in 0..5 {
        let x = d.train.x.row(i);
        assert_eq!(aug.x.row(i), x);
        // block k holds np.rot90(x, k): out[r][c] = prev[c][n - 1 - r]
        let mut prev: Vec<f64> = x.to_vec();
        for k in 1..4 {
            let want: Vec<f64> = (0..n * n)
                .map(|s| prev[(s % n) * n + (n - 1 - s / n)])
                .collect();
            assert_eq!(
                aug.x.row(k * 5 + i).to_vec(),
                want,
                "rotation {k} of sample {i}"
            );
            prev = want;
        }
    }
}
