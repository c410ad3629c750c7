//! eqaug-data: see the crate description.
#![warn(missing_docs)]
