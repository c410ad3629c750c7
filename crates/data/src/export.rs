//! Export to `.npy` and summaries for `eqaug data export | describe`.
