//! The run set-up: the training rows are the first `data.count` samples and the held-out
//! rows the `protocol.held_out` samples after them, for every data set; MNIST errors name both
//! keys when the digits do not suffice; strategy errors name the entry of the file's list.

use eqaug_harness::config::{self, ConfigError};
use eqaug_harness::setup::{RunSetup, SetupError};
use ndarray::s;
use std::path::Path;

/// A config of `dataset` with `count` training and `held_out` held-out samples.
fn config(dataset: &str, count: usize, held_out: usize) -> config::Experiment {
    let (group, size, preset, channels, loss) = match dataset {
        "sbm" => ("perm", 6, "e1", "[2, 2, 2]", "bce"),
        "mnist14" => ("trans2d", 14, "e2", "[2]", "cross_entropy_on_probabilities"),
        _ => ("rot", 14, "e3", "[2, 2, 2]", "segmentation_bce"),
    };
    let text = format!(
        r#"
[experiment]
id = "t"
title = "t"
groups = ["{group}"]
size = {size}
[data]
dataset = "{dataset}"
count = {count}
seed = 5
input_offset = -0.5
[network]
preset = "{preset}"
channels = {channels}
loss = "{loss}"
[protocol]
epochs = 1
learning_rate = 0.1
minibatch = 10
runs = 1
held_out = {held_out}
[[strategies]]
name = "nominal"
kind = "nominal"
[profiles.quick]
"#
    );
    config::parse(&text, Path::new("t.toml"), "quick")
        .unwrap()
        .remove(0)
}

#[test]
fn training_rows_are_the_first_count_samples_and_held_out_rows_come_after() {
    for dataset in ["sbm", "mnist14", "shapes"] {
        let (count, held_out) = (30, 12);
        let with = RunSetup::new(&config(dataset, count, held_out)).unwrap();
        let without = RunSetup::new(&config(dataset, count, 0)).unwrap();
        let all = RunSetup::new(&config(dataset, count + held_out, 0)).unwrap();
        assert_eq!(with.data64.len(), count, "{dataset}");
        assert_eq!(with.held64.nrows(), held_out, "{dataset}");
        // Holding samples out does not change the training set...
        assert_eq!(with.data64.x, without.data64.x, "{dataset}");
        assert_eq!(with.data64.targets, without.data64.targets, "{dataset}");
        // ...which is the first `count` samples; the held-out ones are the next `held_out`.
        assert_eq!(
            with.data64.x,
            all.data64.x.slice(s![..count, ..]),
            "{dataset}"
        );
        assert_eq!(
            with.held64,
            all.data64.x.slice(s![count.., ..]),
            "{dataset}"
        );
        assert_ne!(with.held64.row(0), with.data64.x.row(0), "{dataset}");
        assert_eq!(with.data32.x, with.data64.x.mapv(|v| v as f32), "{dataset}");
    }
    // MNIST: the first `count` digits of the file, resized, minus 0.5.
    let m = eqaug_data::mnist::load_shipped().unwrap();
    let first = eqaug_data::mnist::mnist14(&m, Some(30));
    let s = RunSetup::new(&config("mnist14", 30, 12)).unwrap();
    assert_eq!(s.data64.x, first.x.mapv(|v| v - 0.5));
}

#[test]
fn too_few_digits_for_count_plus_held_out_name_both_keys() {
    let available = eqaug_data::mnist::load_shipped().unwrap().len();
    let e = RunSetup::new(&config("mnist14", available - 5, 10)).unwrap_err();
    assert!(matches!(e, SetupError::NotEnoughDigits { .. }), "{e:?}");
    let text = e.to_string();
    for part in ["data.count", "protocol.held_out", &available.to_string()] {
        assert!(text.contains(part), "{text}");
    }
}

#[test]
fn strategy_errors_name_the_entry_of_the_file_not_of_the_filtered_list() {
    // S_10 (10! elements) is too large to enumerate, so exact averaging is rejected for
    // `perm`. For `perm` strategy [0] is filtered out: the exact strategy is the first of
    // perm's list but the second of the file's.
    let text = r#"
[experiment]
id = "t"
title = "t"
groups = ["trivial", "perm"]
size = 10
[data]
dataset = "sbm"
count = 20
[network]
preset = "e1"
channels = [2, 2, 2]
loss = "bce"
[protocol]
epochs = 1
learning_rate = 0.1
minibatch = 10
runs = 1
[[strategies]]
name = "nominal"
kind = "nominal"
only_groups = ["trivial"]
[[strategies]]
name = "augmented-exact"
kind = "augmented"
sampling = "exact"
[profiles.quick]
"#;
    let e = config::parse(text, Path::new("t.toml"), "quick").unwrap_err();
    match &e {
        ConfigError::Invalid { key, .. } => assert_eq!(key, "strategies[1].sampling", "{e}"),
        other => panic!("{other}"),
    }
}
