//! Criterion benches of eqaug, one module per area. Run with `cargo bench`;
//! `cargo bench -- projection` (or `nn/`, `epoch/`, `e5/`) selects one group. With
//! `EQAUG_BENCH_JSON=<file>` our own interleaved timings are also appended to `<file>` as JSON
//! lines (what `cargo xtask bench` turns into `reports/performance.md`).

use criterion::{criterion_group, criterion_main};

mod common;
mod e5;
mod epoch;
mod nn;
mod projection;

criterion_group!(
    benches,
    projection::bench,
    nn::bench,
    epoch::bench,
    e5::bench
);
criterion_main!(benches);
