//! Criterion benches of eqaug, one module per area. Run with `cargo bench`;
//! `cargo bench -- projection` selects one group.

use criterion::{criterion_group, criterion_main};

mod nn;
mod projection;

criterion_group!(benches, projection::bench, nn::bench);
criterion_main!(benches);
