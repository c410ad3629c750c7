//! Memory estimates made before anything large is allocated, so that a config with
//! `count = 10000000000` or `channels = [100000]`, or `eqaug inspect --group rot --size 200`,
//! is refused with the estimate, the limit and the key responsible instead of aborting on a
//! failed allocation.
//!
//! The estimate is an upper-side approximation of the peak (data in f64 plus the working
//! copies, parameters times the copies a strategy keeps, the orbit maps of the projections,
//! activations of one chunk), computed with checked arithmetic: a product that overflows
//! `u64` is itself an error naming the key.

use crate::config::e5::E5Experiment;
use crate::config::{AnyExperiment, DatasetKind, Experiment, Precision};
use eqaug_groups::Group;
use eqaug_nn::{LayerSpec, NormOver, Points};
use std::collections::BTreeSet;

/// Bytes per index pair of an orbit map while it is computed: the union-find parents, the
/// labels and the orbit ids (`u32` each), and the orbit sizes (at most one per pair, `u32`,
/// with the growth of a vector).
pub const ORBIT_MAP_BYTES_PER_PAIR: u64 = 20;
/// Copies of the parameters a strategy holds while it trains: the parameters, the start
/// `A0`, the gradient, a projected or averaged gradient, and a scratch copy for metrics.
pub const PARAMETER_COPIES: u64 = 5;
/// Activation arrays kept per layer and chunk row: the layer output, its pre-activation
/// cache and the backward delta.
pub const ACTIVATION_COPIES: u64 = 3;

/// Errors of the memory check.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The estimate exceeds the limit.
    #[error(
        "{what} needs about {} of memory, more than the limit of {} ({limit_source}); \
         the largest part is {} for {} ({}): reduce {} or raise the limit with --max-memory",
        human(*needed), human(*limit), human(largest.bytes), largest.what, largest.key,
        largest.reduce
    )]
    TooLarge {
        /// What was estimated (`experiment `e1``, `inspect --group rot --size 200`).
        what: String,
        /// Estimated bytes.
        needed: u64,
        /// The limit in bytes.
        limit: u64,
        /// Where the limit comes from (`--max-memory`, `MemAvailable in /proc/meminfo`).
        limit_source: String,
        /// The largest part of the estimate.
        largest: Box<Part>,
    },
    /// A size product overflows.
    #[error("{what}: {key} is too large: {detail} does not fit in 64 bits")]
    Overflow {
        /// What was estimated.
        what: String,
        /// The key at fault, with its value.
        key: String,
        /// The product that overflows.
        detail: String,
    },
    /// A size beyond what the code can index (orbit ids are `u32`).
    #[error("{what}: {key} is too large: {detail}")]
    Unsupported {
        /// What was estimated.
        what: String,
        /// The key at fault, with its value.
        key: String,
        /// Why.
        detail: String,
    },
    /// The group cannot be built.
    #[error("{what}: {source}")]
    Group {
        /// What was estimated.
        what: String,
        /// The group's error.
        #[source]
        source: eqaug_groups::GroupError,
    },
}

/// One part of an estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The config key (with its value) that drives this part, e.g. `data.count = 1000`.
    pub key: String,
    /// What it is (`the data`, `the parameters`, ...).
    pub what: String,
    /// What to reduce, e.g. `` `data.count` ``.
    pub reduce: String,
    /// Bytes.
    pub bytes: u64,
}

/// An estimate of peak memory, in parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// What was estimated.
    pub what: String,
    /// The parts; the total is their sum.
    pub parts: Vec<Part>,
}

impl Estimate {
    /// The total in bytes (saturating).
    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.bytes))
    }

    /// The largest part.
    pub fn largest(&self) -> Option<&Part> {
        self.parts.iter().max_by_key(|p| p.bytes)
    }

    /// Refuses the estimate when it exceeds `limit` (bytes, with where it comes from);
    /// `None` checks nothing.
    pub fn check(&self, limit: Option<(u64, String)>) -> Result<(), MemoryError> {
        let Some((limit, limit_source)) = limit else {
            return Ok(());
        };
        let needed = self.total();
        if needed <= limit {
            return Ok(());
        }
        Err(MemoryError::TooLarge {
            what: self.what.clone(),
            needed,
            limit,
            limit_source,
            largest: Box::new(self.largest().cloned().unwrap_or(Part {
                key: String::new(),
                what: "everything".into(),
                reduce: "the sizes".into(),
                bytes: needed,
            })),
        })
    }
}

/// A byte count for people: `512 B`, `3.2 MB`, `1.5 GB`, `2.0 TB` (powers of 1024).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A memory size that [`parse_size`] cannot read (the message quotes the text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error("`{0}` is not a size (e.g. 8G, 512M or a number of bytes)")]
    NotASize(String),
    /// Zero or negative.
    #[error("`{0}`: a size must be positive")]
    NotPositive(String),
    /// More bytes than a `u64` holds.
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses a size: bytes, or a number with `K`, `M`, `G`, `T` (powers of 1024, optional `B`
/// or `iB`), e.g. `512M`, `8G`, `1.5T`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let body = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (num, mult) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 1u64 << 10),
        Some('M') => (&body[..body.len() - 1], 1 << 20),
        Some('G') => (&body[..body.len() - 1], 1 << 30),
        Some('T') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| SizeError::NotASize(s.into()))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(SizeError::NotPositive(s.into()));
    }
    let bytes = v * mult as f64;
    if bytes >= u64::MAX as f64 {
        return Err(SizeError::TooLarge(s.into()));
    }
    Ok(bytes as u64)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (Linux; `None` elsewhere).
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The limit to check against: `max_memory` (from `--max-memory`) or the available memory.
pub fn limit(max_memory: Option<u64>) -> Option<(u64, String)> {
    match max_memory {
        Some(b) => Some((b, "--max-memory".into())),
        None => available().map(|b| {
            (
                b,
                "the memory available now, MemAvailable in /proc/meminfo; set another with \
                 --max-memory"
                    .into(),
            )
        }),
    }
}

/// Checked products with messages.
struct Calc<'a> {
    what: &'a str,
}

impl Calc<'_> {
    fn mul(&self, key: &str, factors: &[u64]) -> Result<u64, MemoryError> {
        factors.iter().try_fold(1u64, |a, &f| {
            a.checked_mul(f).ok_or_else(|| MemoryError::Overflow {
                what: self.what.into(),
                key: key.into(),
                detail: factors
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" x "),
            })
        })
    }

    fn add(&self, key: &str, a: u64, b: u64) -> Result<u64, MemoryError> {
        a.checked_add(b).ok_or_else(|| MemoryError::Overflow {
            what: self.what.into(),
            key: key.into(),
            detail: format!("{a} + {b}"),
        })
    }
}

/// Checks that an orbit map of `s_out x s_in` pairs can be indexed (`u32` ids) and returns
/// its pair count.
fn orbit_pairs(calc: &Calc, key: &str, s_out: u64, s_in: u64) -> Result<u64, MemoryError> {
    let pairs = calc.mul(key, &[s_out, s_in])?;
    if pairs > u32::MAX as u64 {
        return Err(MemoryError::Unsupported {
            what: calc.what.into(),
            key: key.into(),
            detail: format!(
                "a layer from {s_in} to {s_out} points has {pairs} index pairs, more than the \
                 {} that orbit maps index",
                u32::MAX
            ),
        });
    }
    Ok(pairs)
}

/// The estimate of `eqaug inspect --group NAME --size N`: the orbit maps of the equivariant
/// (rho -> rho) and invariant (rho -> trivial) layer spaces.
pub fn estimate_inspect(group: &str, size: usize) -> Result<Estimate, MemoryError> {
    let what = format!("inspect --group {group} --size {size}");
    let calc = Calc { what: &what };
    let g = Group::builtin(group, size).map_err(|source| MemoryError::Group {
        what: what.clone(),
        source,
    })?;
    let d = g.degree() as u64;
    let key = format!("--size = {size}");
    let rr = orbit_pairs(&calc, &key, d, d)?;
    let rt = orbit_pairs(&calc, &key, 1, d)?;
    let pairs = calc.add(&key, rr, rt)?;
    Ok(Estimate {
        what: what.clone(),
        parts: vec![Part {
            key,
            what: format!("the orbit maps of {d} x {d} index pairs"),
            reduce: "`--size`".into(),
            bytes: calc.mul("--size", &[pairs, ORBIT_MAP_BYTES_PER_PAIR])?,
        }],
    })
}

/// Values per sample of the targets of a data set on `positions` points.
fn target_width(data: &crate::config::DataSection, positions: u64) -> u64 {
    use crate::config::NpyTargetsKind;
    match data.dataset {
        DatasetKind::Sbm => 1,
        DatasetKind::Mnist14 => 10,
        DatasetKind::Shapes => 2 * positions,
        // The class count may only be known from the file: assume at most one value per
        // input position (the estimate is an order of magnitude, the data loader checks).
        DatasetKind::Npy => match data.targets_kind {
            Some(NpyTargetsKind::Binary) => 1,
            Some(NpyTargetsKind::Classes) => data.classes.map_or(positions, |c| c as u64),
            Some(NpyTargetsKind::Masks) | None => 2 * positions,
        },
    }
}

/// The estimate of one experiment's run (per process: the data once, the orbit maps once,
/// `protocol.parallel_runs` runs at a time).
pub fn estimate_experiment(exp: &Experiment) -> Result<Estimate, MemoryError> {
    let what = format!("experiment `{}` (profile {})", exp.name, exp.profile);
    let calc = Calc { what: &what };
    let group = exp.build_group().map_err(|source| MemoryError::Group {
        what: what.clone(),
        source,
    })?;
    let positions = group.degree() as u64;
    let net_key = "network.channels / network.layers".to_string();

    // The data: f64 inputs and targets, the training/held-out split copies them once, plus
    // the f32 copy.
    let p = &exp.protocol;
    let count_key = format!("data.count = {}", exp.data.count);
    let samples = calc.add(&count_key, exp.data.count as u64, p.held_out as u64)?;
    let width = calc.add(&count_key, positions, target_width(&exp.data, positions))?;
    let data = calc.mul(&count_key, &[samples, width, 8 + 8 + 4])?;

    // The network: parameters, activation widths, orbit maps per distinct layer shape.
    let mut features = positions; // one input channel on the base points
    let mut channels = 1u64;
    let mut on_base = true;
    let mut params = 0u64;
    let mut widths = features;
    let mut shapes: BTreeSet<(bool, bool)> = BTreeSet::new();
    for layer in &exp.network.layers {
        match layer {
            LayerSpec::Group {
                channels: c,
                points,
                ..
            } => {
                let out_base = matches!(points, Points::Base);
                let s_out = if out_base { positions } else { 1 };
                let out_features = calc.mul(&net_key, &[*c as u64, s_out])?;
                let w = calc.mul(&net_key, &[out_features, features])?;
                params = calc.add(&net_key, params, w)?;
                shapes.insert((out_base, on_base));
                features = out_features;
                channels = *c as u64;
                on_base = out_base;
            }
            LayerSpec::Dense { out, bias, .. } => {
                let w = calc.mul(&net_key, &[*out as u64, features])?;
                params = calc.add(&net_key, params, w)?;
                if *bias {
                    params = calc.add(&net_key, params, *out as u64)?;
                }
                features = *out as u64;
                channels = features;
                on_base = false;
            }
            LayerSpec::BatchNorm { over } => {
                let n = match over {
                    NormOver::Features => features,
                    NormOver::Channels | NormOver::Positions => channels,
                };
                params = calc.add(&net_key, params, calc.mul(&net_key, &[2, n])?)?;
            }
            // Activations and other layers keep the width.
            _ => {}
        }
        widths = calc.add(&net_key, widths, features)?;
    }
    let size_key = format!("experiment.size = {}", exp.size);
    let mut pairs = 0u64;
    for (out_base, in_base) in shapes {
        let s = |b: bool| if b { positions } else { 1 };
        pairs = calc.add(
            &size_key,
            pairs,
            orbit_pairs(&calc, &size_key, s(out_base), s(in_base))?,
        )?;
    }
    let orbit = calc.mul(&size_key, &[pairs, ORBIT_MAP_BYTES_PER_PAIR])?;

    // Per run: the parameters in each precision used (A0 is drawn in f64), times the
    // copies; the activations of one chunk (and a transformed copy of its inputs).
    let uses_f32 = exp.strategies.iter().any(|(_, p)| *p == Precision::F32);
    let param_bytes = 8 + if uses_f32 { 4 } else { 0 };
    let runs = p.parallel_runs.max(1) as u64;
    let per_run_params = calc.mul(&net_key, &[params, param_bytes, PARAMETER_COPIES])?;
    let chunk_key = format!("protocol.chunk_rows = {}", p.chunk_rows);
    let act = calc.add(
        &chunk_key,
        calc.mul(&chunk_key, &[widths, ACTIVATION_COPIES])?,
        positions,
    )?;
    let per_run_act = calc.mul(&chunk_key, &[p.chunk_rows as u64, act, 8])?;
    let params_total = calc.mul(&net_key, &[per_run_params, runs])?;
    let act_total = calc.mul(&chunk_key, &[per_run_act, runs])?;
    let net_key_shown = format!(
        "{net_key} ({params} parameters{})",
        if runs > 1 {
            format!(", {runs} runs at a time (protocol.parallel_runs)")
        } else {
            String::new()
        }
    );
    Ok(Estimate {
        what,
        parts: vec![
            Part {
                key: count_key,
                what: format!("the data ({samples} samples of {width} values)"),
                reduce: "`data.count`".into(),
                bytes: data,
            },
            Part {
                key: net_key_shown,
                what: format!("the parameters and their {PARAMETER_COPIES} working copies"),
                reduce: "the channel counts (`network.channels` or `network.layers`)".into(),
                bytes: params_total,
            },
            Part {
                key: size_key,
                what: format!("the orbit maps ({pairs} index pairs)"),
                reduce: "`experiment.size`".into(),
                bytes: orbit,
            },
            Part {
                key: format!(
                    "{chunk_key} rows of {widths} activations each, from network.channels / \
                     network.layers"
                ),
                what: "the activations of one chunk".into(),
                reduce: "`protocol.chunk_rows` or the channel counts (`network.channels` or \
                         `network.layers`)"
                    .into(),
                bytes: act_total,
            },
        ],
    })
}

/// The estimate of one run of an experiment of any kind (see [`estimate_experiment`] and
/// [`estimate_e5`]).
pub fn estimate(exp: &AnyExperiment) -> Result<Estimate, MemoryError> {
    match exp {
        AnyExperiment::FullBatch(e) => estimate_experiment(e),
        AnyExperiment::E5(e) => estimate_e5(e),
    }
}

/// Pixels of an E5 digit (28 x 28).
const E5_PIXELS: u64 = 784;

/// The estimate of an E5 experiment (per process: the digits once, one run at a time): the
/// digits in f64 as loaded (training set, test set, the four rotations of the training set)
/// and again in the training precision; the parameters of the networks a run holds at once
/// (the phase-1 models of each support and the case being trained, each with its working
/// copies); the activations, gradients and im2col columns of the largest pass (an SGD chunk or
/// an evaluation block).
pub fn estimate_e5(exp: &E5Experiment) -> Result<Estimate, MemoryError> {
    let what = format!("experiment `{}` (profile {})", exp.name, exp.profile);
    let calc = Calc { what: &what };
    let official = exp.data.mnist_dir.is_some();
    let shipped_train = eqaug_data::mnist_rotations::SHIPPED_TRAIN as u64;
    let train = exp
        .data
        .train
        .map_or(if official { 60_000 } else { shipped_train }, |n| n as u64);
    let test = exp.data.test.map_or(
        if official {
            10_000
        } else {
            10_000 - shipped_train
        },
        |n| n as u64,
    );
    let t = match exp.protocol.precision {
        Precision::F32 => 4,
        Precision::F64 => 8,
    };
    let train_key = format!("data.train = {train} / data.test = {test}");
    let rotated = calc.mul(&train_key, &[train, 5])?;
    let probe = calc.mul(&train_key, &[exp.protocol.probe_digits as u64, 4])?;
    let rows = calc.add(&train_key, calc.add(&train_key, rotated, test)?, probe)?;
    let data = calc.mul(&train_key, &[rows, E5_PIXELS, 8 + t])?;

    let [c1, c2, c3] = exp.channels.map(|c| c as u64);
    let net_key = format!("network.channels = {:?}", exp.channels);
    let kernels = [
        calc.mul(&net_key, &[c1, 9])?,
        calc.mul(&net_key, &[c1, c2, 9])?,
        calc.mul(&net_key, &[c2, c3, 9])?,
        calc.mul(&net_key, &[c3, 49, 10])?,
    ];
    let params = kernels
        .iter()
        .try_fold(0u64, |a, &k| calc.add(&net_key, a, k))?;
    // The phase-1 models (at most two supports) and the case's network, each with its copies.
    let param_bytes = calc.mul(&net_key, &[params, t, PARAMETER_COPIES, 3])?;

    // Per image: each convolution's output and its gradient, the pooled, activated and
    // normalised maps and their gradients, and the im2col columns of convolutions 2 and 3.
    let per_image = [
        calc.mul(&net_key, &[c1, 784, 2])?,
        calc.mul(&net_key, &[c1, 196, 4])?,
        calc.mul(&net_key, &[c2, 196, 2])?,
        calc.mul(&net_key, &[c2, 49, 4])?,
        calc.mul(&net_key, &[c3, 49, 4])?,
        calc.mul(&net_key, &[c1, 9, 196, 2])?,
        calc.mul(&net_key, &[c2, 9, 49, 2])?,
    ]
    .iter()
    .try_fold(0u64, |a, &k| calc.add(&net_key, a, k))?;
    let pass = exp.protocol.chunk_rows.max(exp.protocol.eval_rows) as u64;
    let pass_key = format!(
        "protocol.chunk_rows = {} / protocol.eval_rows = {}",
        exp.protocol.chunk_rows, exp.protocol.eval_rows
    );
    let act = calc.mul(&pass_key, &[pass, per_image, t])?;
    Ok(Estimate {
        what,
        parts: vec![
            Part {
                key: train_key,
                what: format!(
                    "the digits ({rows} images of {E5_PIXELS} pixels, f64 and training copies)"
                ),
                reduce: "`data.train` (or `data.test`)".into(),
                bytes: data,
            },
            Part {
                key: format!("{net_key} ({params} parameters per network)"),
                what: format!(
                    "the parameters of the networks of a run and their {PARAMETER_COPIES} \
                     working copies"
                ),
                reduce: "`network.channels`".into(),
                bytes: param_bytes,
            },
            Part {
                key: format!("{pass_key} images of {per_image} values, from {net_key}"),
                what: "the activations, gradients and im2col columns of one pass".into(),
                reduce: "`protocol.chunk_rows`, `protocol.eval_rows` or `network.channels`".into(),
                bytes: act,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[experiment]
id = "t"
title = "t"
groups = ["perm"]
size = 6
[data]
dataset = "sbm"
count = 40
[network]
preset = "e1"
channels = [4, 5, 3]
loss = "bce"
[protocol]
epochs = 2
learning_rate = 0.1
minibatch = 20
chunk_rows = 40
runs = 2
[[strategies]]
name = "nominal"
kind = "nominal"
[profiles.quick]
"#;

    fn exp(extra: &str) -> Experiment {
        let text = format!("{BASE}{extra}");
        crate::config::parse(&text, Path::new("t.toml"), "quick")
            .unwrap()
            .remove(0)
    }

    /// The parameter count against the network eqaug-nn builds.
    #[test]
    fn parameter_count_matches_the_network() {
        let e = exp("");
        let est = estimate_experiment(&e).unwrap();
        let g = e.build_group().unwrap();
        let net = eqaug_nn::Network::<f64>::new(&e.network, g, eqaug_groups::Rep::base(1), e.loss)
            .unwrap();
        let a0 =
            net.init_params(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        let count = a0.len();
        let part = &est.parts[1];
        assert!(
            part.key.contains(&format!("({count} parameters")),
            "{part:?}"
        );
        assert_eq!(part.bytes, count as u64 * (8 + 4) * PARAMETER_COPIES);
        // Data: 40 graphs of 36 entries, one target each.
        assert_eq!(est.parts[0].bytes, 40 * 37 * 20);
        // Orbit maps: rho -> rho (36 x 36) and rho -> trivial (1 x 36).
        assert_eq!(
            est.parts[2].bytes,
            (36 * 36 + 36) * ORBIT_MAP_BYTES_PER_PAIR
        );
        assert!(est.total() < 10 << 20);
        est.check(Some((1 << 30, "test".into()))).unwrap();
    }

    #[test]
    fn huge_configs_are_refused_naming_the_key() {
        let e = exp("data = { count = 10000000000 }");
        let err = estimate_experiment(&e)
            .unwrap()
            .check(Some((16 << 30, "--max-memory".into())))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data.count = 10000000000"), "{msg}");
        assert!(
            msg.contains("16.0 GB") && msg.contains("--max-memory"),
            "{msg}"
        );
        let e = exp("network = { channels = [1000000, 5, 3] }");
        let msg = estimate_experiment(&e)
            .unwrap()
            .check(Some((16 << 30, "--max-memory".into())))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("network.channels"), "{msg}");
        // The issue's E2 case: `channels = [100000]` on 14 x 14 images.
        let text = BASE
            .replace(r#"groups = ["perm"]"#, r#"groups = ["rot"]"#)
            .replace("size = 6", "size = 14")
            .replace(r#"dataset = "sbm""#, r#"dataset = "mnist14""#)
            .replace(r#"preset = "e1""#, r#"preset = "e2""#)
            .replace("channels = [4, 5, 3]", "channels = [100000]")
            .replace(
                r#"loss = "bce""#,
                r#"loss = "cross_entropy_on_probabilities""#,
            );
        let e = crate::config::parse(&text, Path::new("t.toml"), "quick")
            .unwrap()
            .remove(0);
        let est = estimate_experiment(&e).unwrap();
        assert!(est.total() > 1 << 50, "{est:?}");
        let msg = est.check(limit(None)).unwrap_err().to_string();
        assert!(msg.contains("network.channels"), "{msg}");
        // A product beyond 64 bits is an error, not a wrap-around.
        let e = exp("network = { channels = [4000000000, 4000000000, 3] }");
        let err = estimate_experiment(&e).unwrap_err();
        assert!(matches!(err, MemoryError::Overflow { .. }), "{err}");
    }

    #[test]
    fn inspect_estimates() {
        // rot on 200 x 200: 40000^2 = 1.6e9 pairs, about 30 GB.
        let est = estimate_inspect("rot", 200).unwrap();
        assert_eq!(
            est.total(),
            (40000u64 * 40000 + 40000) * ORBIT_MAP_BYTES_PER_PAIR
        );
        let msg = est
            .check(Some((8 << 30, "--max-memory".into())))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--size = 200"), "{msg}");
        // 300 x 300: 8.1e9 pairs do not fit u32 orbit ids.
        assert!(matches!(
            estimate_inspect("rot", 300),
            Err(MemoryError::Unsupported { .. })
        ));
        assert!(estimate_inspect("rot", 14).unwrap().total() < 1 << 20);
        assert!(matches!(
            estimate_inspect("perm", 31),
            Err(MemoryError::Group { .. })
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999T").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GB");
    }
}
