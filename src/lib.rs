//! eqaug: optimization dynamics of equivariant and augmented neural networks.
//!
//! This facade re-exports the workspace crates so that `eqaug::groups`, `eqaug::nn`, ... are one
//! dependency away. Each crate can also be used on its own.
#![warn(missing_docs)]

pub use eqaug_data as data;
pub use eqaug_dynamics as dynamics;
pub use eqaug_groups as groups;
pub use eqaug_harness as harness;
pub use eqaug_nn as nn;
