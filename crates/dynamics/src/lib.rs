//! eqaug-dynamics: see the crate description.
#![warn(missing_docs)]
