//! 28 x 28 MNIST (the data of experiment E5, docs/science.md §4 and §9): standardised, split
//! into a training and a test set, and the training set's full C_4 orbit (all four rotations
//! by 90 degrees) for the augmented phase.
//!
//! * Source: the official 60 000 / 10 000 files when a folder is given (`train-*` is the
//!   training set, `t10k-*` the test set, as the authors), else the shipped 10 000 digits
//!   (`datasets/mnist`, in their fixed shuffled order) split at a FIXED index:
//!   the first [`SHIPPED_TRAIN`] = 8 000 digits train, the last 2 000 test.
//! * Standardisation `(pixel / 255 - mean) / std`: by default the fixed constants
//!   0.1307 / 0.3081 (the statistics of the 60 000 official training pixels, which the
//!   authors compute and use), or optionally the statistics of the training set actually
//!   loaded ([`Standardisation::TrainingSet`]). The same constants apply to the test set and
//!   to every rotation (standardisation is pixel-wise, so it commutes with rotating).
//! * Rotations: the elements of eqaug-groups' `rot` group on the 28 x 28 grid applied with
//!   `act_on_sample` (np.rot90 convention; the set of four rotations is the same either way).

use std::path::Path;

use eqaug_groups::{act_on_sample, Group};
use ndarray::Array2;

use crate::mnist::{self, Mnist, MNIST_MEAN, MNIST_STD};
use crate::{DataError, Dataset, Targets};

/// Digits of the shipped 10 000 used for training (the first ones); the rest are the test set.
pub const SHIPPED_TRAIN: usize = 8000;
/// Image side.
pub const SIDE: usize = 28;

/// Which mean and standard deviation standardise the pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Standardisation {
    /// The fixed constants 0.1307 and 0.3081 (MNIST's official training set), as the authors.
    #[default]
    Fixed,
    /// The mean and standard deviation of the loaded training pixels (in [0, 1]).
    TrainingSet,
}

/// MNIST split and standardised: standardised training and test sets (`rows x 784`, row-major pixels,
/// one channel), and how they were made.
#[derive(Clone, Debug, PartialEq)]
pub struct MnistSplit {
    /// The training set.
    pub train: Dataset,
    /// The test set.
    pub test: Dataset,
    /// The mean subtracted (pixel units in [0, 1]).
    pub mean: f64,
    /// The standard deviation divided by.
    pub std: f64,
    /// Where the digits came from, for reports (file and split).
    pub source: String,
}

/// Loads the standardised MNIST split: from `mnist_dir` (the official `train-*` and `t10k-*` IDX files) or the
/// shipped digits (first 8 000 train, last 2 000 test); keeps the first `train_count` /
/// `test_count` of each (all when `None`); standardises as asked.
pub fn load(
    mnist_dir: Option<&Path>,
    train_count: Option<usize>,
    test_count: Option<usize>,
    standardisation: Standardisation,
) -> Result<MnistSplit, DataError> {
    let (train, test, source) = match mnist_dir {
        Some(dir) => {
            let train = mnist::load_idx_split(dir, "train-")?;
            let test = mnist::load_idx_split(dir, "t10k-")?;
            let source = format!(
                "{} ({} training digits) and {} ({} test digits)",
                train.source.display(),
                train.len(),
                test.source.display(),
                test.len()
            );
            (train, test, source)
        }
        None => {
            let all = mnist::load_shipped()?;
            let source = format!(
                "{}: the first {SHIPPED_TRAIN} of {} shipped digits train, the rest test",
                all.source.display(),
                all.len()
            );
            let (train, test) = split(&all, SHIPPED_TRAIN)?;
            (train, test, source)
        }
    };
    from_mnist(&train, &test, train_count, test_count, standardisation).map(|mut d| {
        d.source = source;
        d
    })
}

/// Splits loaded digits at index `at`: `[0, at)` and `[at, len)`.
pub fn split(m: &Mnist, at: usize) -> Result<(Mnist, Mnist), DataError> {
    if at == 0 || at >= m.len() {
        return Err(DataError::InvalidParameter {
            name: "split",
            reason: format!(
                "cannot split {} digits of {} at {at}: both parts must be non-empty",
                m.len(),
                m.source.display()
            ),
        });
    }
    let size = m.rows * m.cols;
    let part = |r: std::ops::Range<usize>| Mnist {
        pixels: m.pixels[r.start * size..r.end * size].to_vec(),
        labels: m.labels[r].to_vec(),
        rows: m.rows,
        cols: m.cols,
        source: m.source.clone(),
    };
    Ok((part(0..at), part(at..m.len())))
}

/// Builds [`MnistSplit`] from loaded training and test digits (28 x 28).
pub fn from_mnist(
    train: &Mnist,
    test: &Mnist,
    train_count: Option<usize>,
    test_count: Option<usize>,
    standardisation: Standardisation,
) -> Result<MnistSplit, DataError> {
    for m in [train, test] {
        if m.rows != SIDE || m.cols != SIDE {
            return Err(DataError::InvalidParameter {
                name: "images",
                reason: format!(
                    "the MNIST split needs 28 x 28 images, {} holds {} x {}",
                    m.source.display(),
                    m.rows,
                    m.cols
                ),
            });
        }
    }
    for (name, c) in [("train_count", train_count), ("test_count", test_count)] {
        if c == Some(0) {
            return Err(DataError::InvalidParameter {
                name,
                reason: "must be at least 1".into(),
            });
        }
    }
    let mut tr = mnist::mnist_unit(train, train_count);
    let mut te = mnist::mnist_unit(test, test_count);
    let (mean, std) = match standardisation {
        Standardisation::Fixed => (MNIST_MEAN, MNIST_STD),
        Standardisation::TrainingSet => {
            let n = tr.x.len() as f64;
            let mean = tr.x.iter().sum::<f64>() / n;
            let var = tr.x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            if var.is_nan() || var <= 0.0 {
                return Err(DataError::InvalidParameter {
                    name: "standardisation",
                    reason: "the training pixels have zero variance".into(),
                });
            }
            (mean, var.sqrt())
        }
    };
    for d in [&mut tr, &mut te] {
        d.x.mapv_inplace(|v| (v - mean) / std);
        d.name = "mnist28-standardised".into();
    }
    Ok(MnistSplit {
        train: tr,
        test: te,
        mean,
        std,
        source: String::new(),
    })
}

/// The full C_4 orbit of a data set of square images: the samples, then all of them rotated
/// by 90, then by 180, then by 270 degrees (4 N rows; labels repeated). Shuffle it when
/// batching (the SGD protocol reshuffles every epoch).
pub fn with_rotations(d: &Dataset) -> Result<Dataset, DataError> {
    let n = d.grid_side().ok_or_else(|| DataError::InvalidParameter {
        name: "positions",
        reason: format!(
            "{}: {} positions do not form a square grid",
            d.name, d.positions
        ),
    })?;
    let group = Group::builtin("rot", n).map_err(|e| DataError::InvalidParameter {
        name: "grid side",
        reason: e.to_string(),
    })?;
    // the elements in the order identity, rot90, rot180, rot270: powers of the generator
    let gen = &group.generators()[0];
    let mut powers = vec![eqaug_groups::Perm::identity(gen.len())];
    for _ in 1..group.order() {
        let next = gen.compose(powers.last().expect("non-empty"));
        powers.push(next);
    }
    let rows = d.len();
    let f = d.features();
    let mut x = Array2::zeros((rows * powers.len(), f));
    for (k, g) in powers.iter().enumerate() {
        for i in 0..rows {
            let src = d.x.row(i);
            let src = src.as_slice().expect("standard layout");
            let mut dst = x.row_mut(k * rows + i);
            act_on_sample(g, src, dst.as_slice_mut().expect("standard layout"));
        }
    }
    let targets = match &d.targets {
        Targets::Classes { labels, classes } => Targets::Classes {
            labels: labels
                .iter()
                .copied()
                .cycle()
                .take(rows * powers.len())
                .collect(),
            classes: *classes,
        },
        Targets::Binary(v) => Targets::Binary(
            v.iter()
                .copied()
                .cycle()
                .take(rows * powers.len())
                .collect(),
        ),
        Targets::Masks { .. } => {
            return Err(DataError::InvalidParameter {
                name: "targets",
                reason: "with_rotations handles invariant targets (labels), not masks".into(),
            })
        }
    };
    Ok(Dataset {
        name: format!("{}-c4-orbit", d.name),
        x,
        channels: d.channels,
        positions: d.positions,
        targets,
    })
}
