//! Export to `.npy` and summaries, for `eqaug data export | describe`.

use crate::{DataError, Dataset, Targets};
use ndarray::{Array1, ArrayD, IxDyn};
use std::fmt;
use std::path::{Path, PathBuf};

fn npy_err(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> DataError {
    DataError::Npy {
        path: path.into(),
        source: Box::new(e),
    }
}

fn write<T: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: &Path,
    a: &ndarray::Array<T, D>,
) -> Result<(), DataError> {
    ndarray_npy::write_npy(path, a).map_err(|e| npy_err(path, e))
}

/// Reshapes rows of `channels * n * n` features to `(rows, channels, n, n)` when the
/// positions form a square grid, else keeps `(rows, features)`.
fn image_shape(rows: usize, channels: usize, positions: usize, side: Option<usize>) -> Vec<usize> {
    match side {
        Some(n) => vec![rows, channels, n, n],
        None => vec![rows, channels * positions],
    }
}

/// Writes `x.npy` (`f64`, shape `(N, C, n, n)` for square grids, else `(N, features)`),
/// `y.npy` (`f64` 0/1 for binary targets, `i64` class labels for classes; for masks the
/// index of the non-empty mask channel, -1 if none) and, for masks, `masks.npy` (`f64`,
/// `(N, C_mask, n, n)`). Creates `dir` if needed; returns the files written.
pub fn write_npy_dir(d: &Dataset, dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    d.check_shapes()?;
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.into(),
        action: "cannot create folder",
        source,
    })?;
    let side = d.grid_side();
    let mut written = Vec::new();
    let xp = dir.join("x.npy");
    let x = ArrayD::from_shape_vec(
        IxDyn(&image_shape(d.len(), d.channels, d.positions, side)),
        d.x.iter().copied().collect(),
    )
    .map_err(|e| npy_err(&xp, e))?;
    write(&xp, &x)?;
    written.push(xp);
    let yp = dir.join("y.npy");
    match &d.targets {
        Targets::Binary(v) => write(&yp, &Array1::from(v.clone()))?,
        Targets::Classes { labels, .. } => write(
            &yp,
            &labels.iter().map(|&l| l as i64).collect::<Array1<i64>>(),
        )?,
        Targets::Masks { masks, channels } => {
            let present: Array1<i64> = masks
                .rows()
                .into_iter()
                .map(|r| {
                    (0..*channels)
                        .find(|&c| {
                            r.iter()
                                .skip(c * d.positions)
                                .take(d.positions)
                                .any(|&v| v != 0.0)
                        })
                        .map_or(-1, |c| c as i64)
                })
                .collect();
            write(&yp, &present)?;
            let mp = dir.join("masks.npy");
            let m = ArrayD::from_shape_vec(
                IxDyn(&image_shape(d.len(), *channels, d.positions, side)),
                masks.iter().copied().collect(),
            )
            .map_err(|e| npy_err(&mp, e))?;
            write(&mp, &m)?;
            written.push(yp.clone());
            written.push(mp);
            return Ok(written);
        }
    }
    written.push(yp);
    Ok(written)
}

/// Counts, class balance and value ranges of a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The data set's name.
    pub name: String,
    /// Number of samples.
    pub rows: usize,
    /// Input channels.
    pub channels: usize,
    /// Positions per channel.
    pub positions: usize,
    /// Smallest input value.
    pub x_min: f64,
    /// Largest input value.
    pub x_max: f64,
    /// Mean input value.
    pub x_mean: f64,
    /// Standard deviation of the input values.
    pub x_std: f64,
    /// Per class (or per mask channel): its name and number of samples.
    pub classes: Vec<(String, usize)>,
    /// Per mask channel: mean mask area in pixels over the samples where it is non-empty.
    pub mean_mask_area: Vec<f64>,
}

/// Computes the [`Summary`] of a data set.
pub fn summarize(d: &Dataset) -> Summary {
    let n = d.x.len().max(1) as f64;
    let mean = d.x.iter().sum::<f64>() / n;
    let std = (d.x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (mut classes, mut mean_mask_area) = (Vec::new(), Vec::new());
    match &d.targets {
        Targets::Binary(v) => {
            let pos = v.iter().filter(|&&y| y == 1.0).count();
            classes.push(("0".to_string(), v.len() - pos));
            classes.push(("1".to_string(), pos));
        }
        Targets::Classes { labels, classes: k } => {
            let mut counts = vec![0; *k];
            labels.iter().for_each(|&l| counts[l] += 1);
            classes = counts
                .into_iter()
                .enumerate()
                .map(|(c, k)| (c.to_string(), k))
                .collect();
        }
        Targets::Masks { masks, channels } => {
            for c in 0..*channels {
                let areas: Vec<f64> = masks
                    .rows()
                    .into_iter()
                    .map(|r| {
                        r.iter()
                            .skip(c * d.positions)
                            .take(d.positions)
                            .sum::<f64>()
                    })
                    .filter(|&a| a > 0.0)
                    .collect();
                let name = match (channels, c) {
                    (2, 0) => "triangle".to_string(),
                    (2, 1) => "pentagon".to_string(),
                    _ => format!("mask {c}"),
                };
                classes.push((name, areas.len()));
                mean_mask_area.push(areas.iter().sum::<f64>() / areas.len().max(1) as f64);
            }
        }
    }
    Summary {
        name: d.name.clone(),
        rows: d.len(),
        channels: d.channels,
        positions: d.positions,
        x_min: d.x.iter().copied().fold(f64::INFINITY, f64::min),
        x_max: d.x.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        x_mean: mean,
        x_std: std,
        classes,
        mean_mask_area,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grid = match (self.positions as f64).sqrt().round() as usize {
            s if s * s == self.positions => format!(" ({s} x {s})"),
            _ => String::new(),
        };
        writeln!(
            f,
            "{}: {} samples, {} channel(s) x {} positions{grid}",
            self.name, self.rows, self.channels, self.positions
        )?;
        writeln!(
            f,
            "  inputs: min {:.4}, max {:.4}, mean {:.4}, std {:.4}",
            self.x_min, self.x_max, self.x_mean, self.x_std
        )?;
        let total = self.rows.max(1) as f64;
        let parts: Vec<String> = self
            .classes
            .iter()
            .map(|(c, k)| format!("{c}: {k} ({:.1}%)", 100.0 * *k as f64 / total))
            .collect();
        write!(f, "  classes: {}", parts.join(", "))?;
        if !self.mean_mask_area.is_empty() {
            let areas: Vec<String> = self
                .classes
                .iter()
                .zip(&self.mean_mask_area)
                .map(|((c, _), a)| format!("{c} {a:.2} px"))
                .collect();
            write!(f, "\n  mean mask area: {}", areas.join(", "))?;
        }
        Ok(())
    }
}
