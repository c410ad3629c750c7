//! The [`Dataset`] container shared by all generators and loaders.

use crate::DataError;
use ndarray::{Array2, ArrayView2, Axis, Slice};
use std::ops::Range;

/// Targets of a data set, one per row of [`Dataset::x`].
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Binary labels, each 0.0 or 1.0 (E1: 1.0 iff the graph is connected).
    Binary(Vec<f64>),
    /// Class labels in `0..classes` (MNIST digits).
    Classes {
        /// One label per sample.
        labels: Vec<usize>,
        /// Number of classes.
        classes: usize,
    },
    /// Binary segmentation masks: `rows x (channels * positions)`, channel-major like the
    /// inputs, values 0.0 or 1.0 (E3: channel 0 triangle, channel 1 pentagon).
    Masks {
        /// The masks, one row per sample.
        masks: Array2<f64>,
        /// Number of mask channels.
        channels: usize,
    },
}

impl Targets {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Targets::Binary(v) => v.len(),
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Masks { masks, .. } => masks.nrows(),
        }
    }

    /// True if there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets of the rows in `rows` (copied).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn slice(&self, rows: Range<usize>) -> Targets {
        match self {
            Targets::Binary(v) => Targets::Binary(v[rows].to_vec()),
            Targets::Classes { labels, classes } => Targets::Classes {
                labels: labels[rows].to_vec(),
                classes: *classes,
            },
            Targets::Masks { masks, channels } => Targets::Masks {
                masks: masks.slice_axis(Axis(0), Slice::from(rows)).to_owned(),
                channels: *channels,
            },
        }
    }
}

/// A data set: inputs and targets, one row per sample.
///
/// `x` has shape `rows x (channels * positions)`, channel-major: feature
/// `c * positions + s`, with pixels indexed row-major `s = n * row + col` (adjacency
/// entries `(i, j)` as `s = n * i + j`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name (`"sbm"`, `"mnist14"`, `"shapes"`, ...).
    pub name: String,
    /// The inputs, one row per sample.
    pub x: Array2<f64>,
    /// Number of input channels.
    pub channels: usize,
    /// Number of positions (pixels, adjacency entries) per channel.
    pub positions: usize,
    /// The targets.
    pub targets: Targets,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// True if there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of input features per sample (`channels * positions`).
    pub fn features(&self) -> usize {
        self.channels * self.positions
    }

    /// The side `n` of the square grid of positions (`positions = n * n`), if it is one.
    pub fn grid_side(&self) -> Option<usize> {
        let n = (self.positions as f64).sqrt().round() as usize;
        (n * n == self.positions).then_some(n)
    }

    /// Adds `delta` to every input (e.g. `-0.5`, the paper's centring in E1 and E2).
    pub fn offset_inputs(&mut self, delta: f64) {
        self.x.mapv_inplace(|v| v + delta);
    }

    /// The first `count` samples (all of them if `count >= len()`).
    pub fn subset(&self, count: usize) -> Dataset {
        self.rows(0..count.min(self.len()))
    }

    /// The samples of the rows in `rows` (copied).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn rows(&self, rows: Range<usize>) -> Dataset {
        Dataset {
            name: self.name.clone(),
            x: self
                .x
                .slice_axis(Axis(0), Slice::from(rows.clone()))
                .to_owned(),
            channels: self.channels,
            positions: self.positions,
            targets: self.targets.slice(rows),
        }
    }

    /// A view of the inputs of the rows in `rows` (e.g. a mini-batch or a chunk from
    /// [`crate::batching`]).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn x_rows(&self, rows: Range<usize>) -> ArrayView2<'_, f64> {
        self.x.slice_axis(Axis(0), Slice::from(rows))
    }

    /// Checks the internal consistency of the shapes (rows of `x` and targets agree,
    /// `x` has `channels * positions` columns, masks have matching columns).
    pub fn check_shapes(&self) -> Result<(), DataError> {
        let bad = |reason: String| {
            Err(DataError::Shapes {
                dataset: self.name.clone(),
                reason,
            })
        };
        if self.x.ncols() != self.features() {
            return bad(format!(
                "x has {} columns, expected channels * positions = {} * {}",
                self.x.ncols(),
                self.channels,
                self.positions
            ));
        }
        if self.targets.len() != self.len() {
            return bad(format!(
                "{} input rows but {} targets",
                self.len(),
                self.targets.len()
            ));
        }
        if let Targets::Masks { masks, channels } = &self.targets {
            if masks.ncols() != channels * self.positions {
                return bad(format!(
                    "masks have {} columns, expected {} * {}",
                    masks.ncols(),
                    channels,
                    self.positions
                ));
            }
        }
        Ok(())
    }
}
