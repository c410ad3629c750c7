//! The `npy` dataset kind: inputs and targets from `.npy` files a user provides (for example
//! the output of `eqaug data export`, or arrays saved with `numpy.save`), checked against the
//! shape the group's representation requires.
//!
//! * Inputs: `float32` or `float64`, shape `(N, C * P)`, `(N, C, P)` or `(N, C, h, w)` with
//!   `h * w = P`, where `C` is the number of input channels and `P` the number of positions the
//!   group acts on (`n * n` for an `n x n` grid or an `n`-node graph's adjacency matrix).
//!   Features are channel-major, positions row-major, as everywhere in eqaug.
//! * Targets, one of [`NpyTargets`]: binary labels (`(N,)` or `(N, 1)`, values 0 or 1), class
//!   labels (`(N,)` or `(N, 1)`, integers in `0..classes`; floats with integral values are
//!   accepted) or segmentation masks (same layouts as the inputs, values in `[0, 1]`).
//!
//! Every error names the file and the mismatch ([`NpyError`]).

use crate::{Dataset, Targets};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement};
use std::path::{Path, PathBuf};

/// What the targets file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyTargets {
    /// Binary labels, 0 or 1 (a sigmoid output with binary cross-entropy, like E1).
    Binary,
    /// Class labels in `0..classes` (one-hot targets for cross-entropy, like E2).
    Classes {
        /// Number of classes; `None` takes the largest label + 1 (at least 2).
        classes: Option<usize>,
    },
    /// Masks that move with the inputs (segmentation, like E3).
    Masks {
        /// Number of mask channels; `None` reads it from a `(N, C, ...)` shape (a 2-D
        /// `(N, C * P)` file then needs it).
        channels: Option<usize>,
    },
}

/// Where the files are and what shape the group requires.
#[derive(Debug, Clone, PartialEq)]
pub struct NpySpec {
    /// The inputs file.
    pub inputs: PathBuf,
    /// The targets file.
    pub targets: PathBuf,
    /// How to read the targets.
    pub target_kind: NpyTargets,
    /// Input channels `C`.
    pub channels: usize,
    /// Positions `P` the group acts on (its degree).
    pub positions: usize,
}

/// An `.npy` file that cannot be used, with the file and the mismatch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The header declares more data than the file holds (truncated, or a header that lies).
    #[error(
        "{role} file {}: the header declares shape {shape:?}, {needed} bytes of data, but the \
         file holds {have}: truncated or not a valid .npy file",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// `inputs` or `targets`.
        role: &'static str,
        /// The declared shape.
        shape: Vec<u64>,
        /// Bytes the shape needs (saturating).
        needed: u64,
        /// Bytes after the header.
        have: u64,
    },
    /// The file does not exist or cannot be read.
    #[error("{}: cannot read {role} file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// `inputs` or `targets`.
        role: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid `.npy` file (bad header, truncated data, ...).
    #[error("{}: not a readable .npy file: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: ReadNpyError,
    },
    /// The element type is not one this file may hold.
    #[error("{}: dtype {found} is not supported for {role}; expected {expected}", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// `inputs` or `targets`.
        role: &'static str,
        /// The descriptor found in the header (e.g. `'<i8'`).
        found: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The number of dimensions is not one of those accepted.
    #[error("{}: {role} have shape {shape:?} (rank {}), expected {expected}", path.display(), shape.len())]
    Rank {
        /// The file.
        path: PathBuf,
        /// `inputs` or `targets`.
        role: &'static str,
        /// The shape found.
        shape: Vec<usize>,
        /// The accepted shapes.
        expected: String,
    },
    /// The width of a row does not fit the group's representation.
    #[error("{}: {role} have shape {shape:?}: {reason}", path.display())]
    Width {
        /// The file.
        path: PathBuf,
        /// `inputs` or `targets`.
        role: &'static str,
        /// The shape found.
        shape: Vec<usize>,
        /// What does not fit.
        reason: String,
    },
    /// Inputs and targets disagree on the number of samples.
    #[error("{} holds {input_rows} samples but {} holds {target_rows}", inputs.display(), targets.display())]
    Rows {
        /// The inputs file.
        inputs: PathBuf,
        /// Its number of rows.
        input_rows: usize,
        /// The targets file.
        targets: PathBuf,
        /// Its number of rows.
        target_rows: usize,
    },
    /// A value that the targets' kind does not allow, or a non-finite input.
    #[error("{}: row {row}: {reason}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The row (sample) at fault.
        row: usize,
        /// What is wrong.
        reason: String,
    },
    /// The spec itself is unusable (zero channels or positions, zero classes).
    #[error("npy dataset: {0}")]
    Spec(String),
}

/// An array read from a file, with the kind of element it held.
struct Loaded {
    values: ArrayD<f64>,
    integral: bool,
}

fn read_bytes(path: &Path, role: &'static str) -> Result<Vec<u8>, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.into(),
        role,
        source,
    })?;
    check_declared_size(path, role, &bytes)?;
    Ok(bytes)
}

/// Refuses a file whose header declares more data than the file holds, before anything is
/// allocated for it (a header claiming `(10^12, 100)` would otherwise abort the process on the
/// allocation). Headers that cannot be parsed here are left to the reader's own errors.
fn check_declared_size(path: &Path, role: &'static str, bytes: &[u8]) -> Result<(), NpyError> {
    if bytes.len() < 12 || &bytes[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (start, len) = match bytes[6] {
        1 => (10usize, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        _ => (
            12usize,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
    };
    let Some(header) = bytes
        .get(start..start.saturating_add(len))
        .and_then(|h| std::str::from_utf8(h).ok())
    else {
        return Ok(());
    };
    let item = header
        .split("'descr':")
        .nth(1)
        .and_then(|d| d.split('\'').nth(1))
        .and_then(|d| d.trim_start_matches(['<', '>', '|', '=']).get(1..))
        .and_then(|n| n.parse::<u64>().ok());
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next());
    let (Some(item), Some(shape)) = (item, shape) else {
        return Ok(());
    };
    let dims: Option<Vec<u64>> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>().ok())
        .collect();
    let Some(dims) = dims else {
        return Ok(());
    };
    let needed = dims
        .iter()
        .try_fold(item, |a, &d| a.checked_mul(d))
        .unwrap_or(u64::MAX);
    let have = (bytes.len() - (start + len).min(bytes.len())) as u64;
    if needed > have {
        return Err(NpyError::Truncated {
            path: path.into(),
            role,
            shape: dims,
            needed,
            have,
        });
    }
    Ok(())
}

/// Tries one element type; `Ok(None)` when the descriptor is another type.
fn try_read<A: ReadableElement + Copy>(
    path: &Path,
    bytes: &[u8],
    conv: impl Fn(A) -> f64,
) -> Result<Option<ArrayD<f64>>, NpyError> {
    match ArrayD::<A>::read_npy(bytes) {
        Ok(a) => Ok(Some(a.mapv(conv))),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(source) => Err(NpyError::Format {
            path: path.into(),
            source,
        }),
    }
}

/// The header's descriptor, for the error message.
fn descriptor(path: &Path, bytes: &[u8]) -> NpyError {
    // Reading as a type no file holds yields the descriptor in the error.
    match ArrayD::<bool>::read_npy(bytes) {
        Err(ReadNpyError::WrongDescriptor(d)) => NpyError::Dtype {
            path: path.into(),
            role: "",
            found: d.to_string(),
            expected: "",
        },
        Ok(_) => NpyError::Dtype {
            path: path.into(),
            role: "",
            found: "'|b1' (bool)".into(),
            expected: "",
        },
        Err(source) => NpyError::Format {
            path: path.into(),
            source,
        },
    }
}

fn dtype_error(path: &Path, bytes: &[u8], role: &'static str, expected: &'static str) -> NpyError {
    match descriptor(path, bytes) {
        NpyError::Dtype { found, .. } => NpyError::Dtype {
            path: path.into(),
            role,
            found,
            expected,
        },
        e => e,
    }
}

/// Reads a floating-point file (`f32` or `f64`).
fn read_float(path: &Path, role: &'static str) -> Result<Loaded, NpyError> {
    let bytes = read_bytes(path, role)?;
    if let Some(v) = try_read::<f64>(path, &bytes, |x| x)? {
        return Ok(Loaded {
            values: v,
            integral: false,
        });
    }
    if let Some(v) = try_read::<f32>(path, &bytes, f64::from)? {
        return Ok(Loaded {
            values: v,
            integral: false,
        });
    }
    Err(dtype_error(
        path,
        &bytes,
        role,
        "float32 or float64 (numpy: x.astype(np.float32))",
    ))
}

/// Reads a numeric file: floats, signed or unsigned integers, or booleans.
fn read_numeric(path: &Path, role: &'static str) -> Result<Loaded, NpyError> {
    let bytes = read_bytes(path, role)?;
    macro_rules! attempt {
        ($t:ty, $integral:expr) => {
            if let Some(v) = try_read::<$t>(path, &bytes, |x| x as f64)? {
                return Ok(Loaded {
                    values: v,
                    integral: $integral,
                });
            }
        };
    }
    attempt!(f64, false);
    attempt!(f32, false);
    attempt!(i64, true);
    attempt!(i32, true);
    attempt!(i16, true);
    attempt!(i8, true);
    attempt!(u64, true);
    attempt!(u32, true);
    attempt!(u16, true);
    attempt!(u8, true);
    if let Some(v) = try_read::<bool>(path, &bytes, |x| if x { 1.0 } else { 0.0 })? {
        return Ok(Loaded {
            values: v,
            integral: true,
        });
    }
    Err(dtype_error(
        path,
        &bytes,
        role,
        "a float, integer or boolean type",
    ))
}

/// Checks a `(N, C*P)`, `(N, C, P)` or `(N, C, h, w)` array against `channels` (`None`:
/// read from the shape) and `positions`; returns the rows as `N x (C * P)` and `C`.
fn as_rows(
    path: &Path,
    role: &'static str,
    a: ArrayD<f64>,
    channels: Option<usize>,
    positions: usize,
) -> Result<(ndarray::Array2<f64>, usize), NpyError> {
    let shape = a.shape().to_vec();
    let width_err = |reason: String| NpyError::Width {
        path: path.into(),
        role,
        shape: shape.clone(),
        reason,
    };
    let c = match shape.len() {
        2 => {
            let c = match channels {
                Some(c) => c,
                None if shape[1].is_multiple_of(positions) => shape[1] / positions,
                None => {
                    return Err(width_err(format!(
                        "a row of {} values is not a whole number of channels of {positions} \
                         positions",
                        shape[1]
                    )))
                }
            };
            if shape[1] != c * positions {
                return Err(width_err(format!(
                    "the group acts on {positions} positions and {c} channel(s) are expected, \
                     so a row must hold {c} x {positions} = {} values, not {}",
                    c * positions,
                    shape[1]
                )));
            }
            c
        }
        3 | 4 => {
            let c = shape[1];
            if let Some(want) = channels {
                if c != want {
                    return Err(width_err(format!(
                        "axis 1 holds {c} channel(s), {want} expected"
                    )));
                }
            }
            let p: usize = shape[2..].iter().product();
            if p != positions {
                return Err(width_err(format!(
                    "each channel holds {} = {p} positions, but the group acts on {positions}",
                    shape[2..]
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(" x ")
                )));
            }
            c
        }
        _ => {
            return Err(NpyError::Rank {
                path: path.into(),
                role,
                shape,
                expected: "(N, C * P), (N, C, P) or (N, C, h, w)".into(),
            })
        }
    };
    if c == 0 {
        return Err(width_err("there are 0 channels".into()));
    }
    let n = shape[0];
    // Iterating in logical order also handles Fortran-ordered files.
    let rows = ndarray::Array2::from_shape_vec((n, c * positions), a.iter().copied().collect())
        .expect("the shape was checked");
    Ok((rows, c))
}

/// Checks a label file of shape `(N,)` or `(N, 1)`; returns the labels.
fn as_labels(path: &Path, a: &ArrayD<f64>) -> Result<Vec<f64>, NpyError> {
    let shape = a.shape();
    match shape {
        [_] | [_, 1] => Ok(a.iter().copied().collect()),
        _ => Err(NpyError::Rank {
            path: path.into(),
            role: "targets",
            shape: shape.to_vec(),
            expected: "one label per sample: (N,) or (N, 1)".into(),
        }),
    }
}

/// The most classes inferred from the labels (a larger count must be given explicitly).
pub const MAX_INFERRED_CLASSES: usize = 100_000;

/// Loads a data set from `.npy` files (see the module documentation for the accepted
/// shapes and dtypes). The data set's name is `npy`, its inputs are `f64`.
pub fn load(spec: &NpySpec) -> Result<Dataset, NpyError> {
    if spec.channels == 0 || spec.positions == 0 {
        return Err(NpyError::Spec(format!(
            "{} channel(s) x {} position(s): both must be at least 1",
            spec.channels, spec.positions
        )));
    }
    let inp = read_float(&spec.inputs, "inputs")?;
    let (x, channels) = as_rows(
        &spec.inputs,
        "inputs",
        inp.values,
        Some(spec.channels),
        spec.positions,
    )?;
    if let Some((i, _)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(NpyError::Value {
            path: spec.inputs.clone(),
            row: i / x.ncols().max(1),
            reason: format!("non-finite input value {}", x.as_slice().expect("owned")[i]),
        });
    }
    let tp = &spec.targets;
    let t = read_numeric(tp, "targets")?;
    let rows_err = |target_rows: usize| NpyError::Rows {
        inputs: spec.inputs.clone(),
        input_rows: x.nrows(),
        targets: tp.clone(),
        target_rows,
    };
    let value_err = |row: usize, reason: String| NpyError::Value {
        path: tp.clone(),
        row,
        reason,
    };
    let targets = match spec.target_kind {
        NpyTargets::Binary => {
            let v = as_labels(tp, &t.values)?;
            if v.len() != x.nrows() {
                return Err(rows_err(v.len()));
            }
            if let Some((i, y)) = v.iter().enumerate().find(|(_, &y)| y != 0.0 && y != 1.0) {
                return Err(value_err(i, format!("binary label {y} is not 0 or 1")));
            }
            Targets::Binary(v)
        }
        NpyTargets::Classes { classes } => {
            let v = as_labels(tp, &t.values)?;
            if v.len() != x.nrows() {
                return Err(rows_err(v.len()));
            }
            if let Some((i, y)) = v
                .iter()
                .enumerate()
                .find(|(_, &y)| !(y >= 0.0 && y.fract() == 0.0 && y < u32::MAX as f64))
            {
                let what = if t.integral { "" } else { " (float file)" };
                return Err(value_err(
                    i,
                    format!("class label {y}{what} is not a non-negative integer"),
                ));
            }
            let labels: Vec<usize> = v.iter().map(|&y| y as usize).collect();
            let k = match classes {
                Some(0) => return Err(NpyError::Spec("classes must be at least 1".into())),
                Some(k) => k,
                None => {
                    let k = (labels.iter().copied().max().unwrap_or(0) + 1).max(2);
                    // One-hot targets take rows x classes values: a stray huge label must not
                    // become billions of classes.
                    if k > MAX_INFERRED_CLASSES {
                        let i = labels.iter().position(|&l| l + 1 == k).unwrap_or(0);
                        return Err(value_err(
                            i,
                            format!(
                                "class label {} would make {k} classes (more than \
                                 {MAX_INFERRED_CLASSES} are never inferred): give the class \
                                 count explicitly if it is meant",
                                k - 1
                            ),
                        ));
                    }
                    k
                }
            };
            if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
                return Err(value_err(i, format!("class label {l} is not in 0..{k}")));
            }
            Targets::Classes { labels, classes: k }
        }
        NpyTargets::Masks { channels } => {
            let (m, c) = as_rows(tp, "targets", t.values, channels, spec.positions)?;
            if m.nrows() != x.nrows() {
                return Err(rows_err(m.nrows()));
            }
            if let Some((i, v)) = m
                .iter()
                .enumerate()
                .find(|(_, v)| !(**v >= 0.0 && **v <= 1.0))
            {
                return Err(value_err(
                    i / m.ncols().max(1),
                    format!("mask value {v} is not in [0, 1]"),
                ));
            }
            Targets::Masks {
                masks: m,
                channels: c,
            }
        }
    };
    let d = Dataset {
        name: "npy".into(),
        x,
        channels,
        positions: spec.positions,
        targets,
    };
    debug_assert!(d.check_shapes().is_ok());
    Ok(d)
}
