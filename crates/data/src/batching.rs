//! Mini-batches and chunks of mini-batches as row ranges (docs/science.md §3).
//!
//! The protocol visits the data in mini-batches, in order; the last mini-batch may be
//! shorter when the batch size does not divide the number of rows. A *chunk* is a group
//! of consecutive whole mini-batches seen as one range of rows, so that a caller can run
//! one large GEMM over several mini-batches that share a group element or whose per-batch
//! statistics it computes separately.

use std::ops::Range;

/// The mini-batches of `rows` rows with batch size `batch`, in order, as row ranges.
/// The last one is shorter if `batch` does not divide `rows`.
///
/// # Panics
/// If `batch == 0`.
pub fn minibatches(rows: usize, batch: usize) -> impl ExactSizeIterator<Item = Range<usize>> {
    assert!(batch > 0, "mini-batch size must be positive");
    let count = rows.div_ceil(batch);
    (0..count).map(move |k| k * batch..((k + 1) * batch).min(rows))
}

/// Number of mini-batches of size `batch` covering `rows` rows.
///
/// # Panics
/// If `batch == 0`.
pub fn minibatch_count(rows: usize, batch: usize) -> usize {
    assert!(batch > 0, "mini-batch size must be positive");
    rows.div_ceil(batch)
}

/// Groups of `per_chunk` consecutive mini-batches (of size `batch`) as single row ranges.
/// Chunk boundaries always fall on mini-batch boundaries; the last chunk may hold fewer
/// mini-batches.
///
/// # Panics
/// If `batch == 0` or `per_chunk == 0`.
pub fn chunks(rows: usize, batch: usize, per_chunk: usize) -> impl ExactSizeIterator<Item = Chunk> {
    assert!(batch > 0, "mini-batch size must be positive");
    assert!(per_chunk > 0, "mini-batches per chunk must be positive");
    let batches = minibatch_count(rows, batch);
    let count = batches.div_ceil(per_chunk);
    (0..count).map(move |c| {
        let first = c * per_chunk;
        let last = ((c + 1) * per_chunk).min(batches);
        Chunk {
            rows: first * batch..(last * batch).min(rows),
            batches: first..last,
            batch,
        }
    })
}

/// A run of consecutive whole mini-batches viewed as one range of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The rows covered by the chunk.
    pub rows: Range<usize>,
    /// The indices of the mini-batches in the chunk.
    pub batches: Range<usize>,
    /// The mini-batch size.
    pub batch: usize,
}

impl Chunk {
    /// The mini-batches of the chunk as ranges of rows *relative to the chunk's start*
    /// (for slicing a chunk-sized array of activations).
    pub fn local_minibatches(&self) -> impl ExactSizeIterator<Item = Range<usize>> {
        minibatches(self.rows.len(), self.batch)
    }

    /// The mini-batches of the chunk as absolute row ranges.
    pub fn minibatches(&self) -> impl ExactSizeIterator<Item = Range<usize>> {
        let start = self.rows.start;
        self.local_minibatches()
            .map(move |r| r.start + start..r.end + start)
    }
}
