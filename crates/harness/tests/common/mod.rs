//! Helpers shared by the harness's integration tests: the `eqaug` binary run as a user runs
//! it, its output, and a tiny full-batch experiment.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn eqaug(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .output()
        .expect("runs eqaug")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub const TINY: &str = r#"
[experiment]
id = "tiny"
title = "tiny"
groups = ["perm"]
size = 4
[data]
dataset = "sbm"
count = 40
seed = 1
[network]
preset = "e1"
channels = [2, 3, 2]
loss = "bce"
[protocol]
epochs = 2
learning_rate = 0.05
minibatch = 20
chunk_rows = 40
runs = 3
[[strategies]]
name = "nominal"
kind = "nominal"
[[strategies]]
name = "equivariant"
kind = "equivariant"
[profiles.quick]
"#;

pub fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Exit code 1 with an `error:` line, not a signal (an abort) or a panic.
pub fn assert_clean_error(o: &Output) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let e = stderr(o);
    assert!(e.starts_with("error: "), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
