//! E5 (SPEC sections 4 and 9): compatibility and unitarity in a CNN, a two-phase SGD
//! experiment. Phase 1 trains the equivariant model (kernels in E ∩ L_Omega); phase 2 loads
//! its weights into a model parametrised on the kernel support Omega and trains it on the
//! training set augmented by its full C_4 orbit, recording after every step how far it is from
//! E ∩ L. Three cases: `cross` (compatible, unitary), `skew` (not compatible),
//! `cross-nonunitary` (compatible, not unitary).
//!
//! * [`config`]: the `experiments/e5.toml` schema (`[experiment] kind = "e5"`);
//! * [`runner`]: runs the experiment;
//! * [`schema`] (= `crate::schema::e5`): the files a run writes, read by the report
//!   (`crate::report::e5`).

pub mod config;
// pub mod runner; (after the e5-model merge)

pub use crate::schema::e5 as schema;
