//! Many `eqaug run` processes writing into one output folder at once (what a Slurm job array
//! does): no run is lost, none is corrupted, and the metrics are byte-identical to an
//! unsharded run. Real processes of the built binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const CONFIG: &str = r#"
[experiment]
id = "conc"
title = "concurrency"
groups = ["perm"]
size = 4
[data]
dataset = "sbm"
count = 60
seed = 3
[network]
preset = "e1"
channels = [3, 4, 2]
loss = "bce"
[protocol]
epochs = 4
learning_rate = 0.05
minibatch = 20
chunk_rows = 60
runs = 8
seed = 11
checkpoints = [0, 2, 4]
[[strategies]]
name = "nominal"
kind = "nominal"
[[strategies]]
name = "augmented"
kind = "augmented"
passes = 2
[[strategies]]
name = "equivariant"
kind = "equivariant"
[profiles.quick]
"#;

fn spawn(config: &Path, out: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("run")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env("MATMUL_NUM_THREADS", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts eqaug")
}

fn wait_ok(children: Vec<Child>) -> Vec<String> {
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(o.status.success(), "eqaug run failed:\n{err}");
            err
        })
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The results of a folder that must be identical to the reference: every run's metrics
/// and checkpoints (not the timings in run.json).
fn results(exp_dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files(exp_dir)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.starts_with("run-") && (s.ends_with("metrics.csv") || s.contains("checkpoints"))
        })
        .map(|p| {
            let bytes = std::fs::read(exp_dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

fn status(out: &Path) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("status")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string(),
    )
}

const ALL_DONE: &str =
    "eqaug status: 8 of 8 runs finished, 0 running, 0 failed, 0 corrupt, 0 missing (1 experiment)";

#[test]
fn concurrent_shards_and_duplicate_processes_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("conc.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let reference = tmp.path().join("ref");
    wait_ok(vec![spawn(&config, &reference, &[])]);
    let want = results(&reference.join("conc"));
    assert_eq!(
        want.iter()
            .filter(|(p, _)| p.ends_with("metrics.csv"))
            .count(),
        8
    );
    let experiment_json = std::fs::read(reference.join("conc/experiment.json")).unwrap();

    // Four shards at once into one folder, three times over.
    for round in 0..3 {
        let out = tmp.path().join(format!("shards-{round}"));
        let children = (1..=4)
            .map(|k| spawn(&config, &out, &["--shard", &format!("{k}/4")]))
            .collect();
        wait_ok(children);
        assert_eq!(
            status(&out),
            (Some(0), ALL_DONE.to_string()),
            "round {round}"
        );
        assert_eq!(results(&out.join("conc")), want, "round {round}");
        let left: Vec<PathBuf> = files(&out.join("conc"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        // The wall time differs; the rest of experiment.json is the unsharded one's.
        let strip = |b: &[u8]| {
            let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
            v.as_object_mut().unwrap().remove("wall_seconds");
            v
        };
        assert_eq!(
            strip(&std::fs::read(out.join("conc/experiment.json")).unwrap()),
            strip(&experiment_json)
        );
    }

    // Two identical unsharded runs at once: each run is trained by one of them, the other
    // skips it (running elsewhere or already done); every checkpoint is there.
    let out = tmp.path().join("twice");
    let logs = wait_ok(vec![spawn(&config, &out, &[]), spawn(&config, &out, &[])]);
    assert_eq!(status(&out), (Some(0), ALL_DONE.to_string()));
    assert_eq!(results(&out.join("conc")), want);
    let trained: usize = logs
        .iter()
        .map(|l| l.lines().filter(|l| l.contains(" done in ")).count())
        .sum();
    assert_eq!(
        trained,
        8,
        "each run trained exactly once:\n{}",
        logs.join("\n")
    );
    for l in &logs {
        assert!(
            l.lines().any(|l| l.starts_with("eqaug run: ")),
            "summary line:\n{l}"
        );
    }
}

#[test]
fn fewer_runs_and_changed_configs_leave_the_folder_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("conc.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = tmp.path().join("out");
    wait_ok(vec![spawn(&config, &out, &["--runs", "4"])]);
    let exp_json = out.join("conc/experiment.json");
    let runs_of = |p: &Path| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["runs"].as_u64().unwrap()
    };
    assert_eq!(runs_of(&exp_json), 4);
    // --runs 2 on a 4-run folder: nothing to do, experiment.json unchanged.
    let before = std::fs::read(&exp_json).unwrap();
    let logs = wait_ok(vec![spawn(&config, &out, &["--runs", "2"])]);
    assert!(
        logs[0].contains("eqaug run: 0 finished, 0 failed, 2 skipped"),
        "{}",
        logs[0]
    );
    assert_eq!(std::fs::read(&exp_json).unwrap(), before);

    // Another learning rate into the same folder: refused before experiment.json changes.
    let changed = tmp.path().join("changed.toml");
    std::fs::write(
        &changed,
        CONFIG.replace("learning_rate = 0.05", "learning_rate = 0.07"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("run")
        .arg(&changed)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("different configuration"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&exp_json).unwrap(), before);

    // A truncated run.json is a corrupt run (rerun it), not another configuration.
    let rj = out.join("conc/run-001/run.json");
    let text = std::fs::read_to_string(&rj).unwrap();
    std::fs::write(&rj, &text[..text.len() / 2]).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("run")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("run-001/run.json") && err.contains("corrupt") && !err.contains("different"),
        "{err}"
    );

    // A stale temporary folder of a dead process is removed and the run redone.
    std::fs::rename(out.join("conc/run-001"), out.join("conc/run-001.tmp")).unwrap();
    wait_ok(vec![spawn(&config, &out, &["--runs", "4"])]);
    assert!(!out.join("conc/run-001.tmp").exists());
    assert_eq!(
        status(&out).0,
        Some(0),
        "the 4 runs of the folder are there again"
    );
}

#[test]
fn a_diverged_run_exits_non_zero_with_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("nan.toml");
    std::fs::write(
        &config,
        CONFIG
            .replace("learning_rate = 0.05", "learning_rate = 1e30")
            .replace("runs = 8", "runs = 2"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = spawn(&config, &out, &[]).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("eqaug run: 0 finished, 2 failed, 0 skipped"),
        "{err}"
    );
    let (code, line) = status(&out);
    assert_eq!(code, Some(2));
    assert!(line.contains("2 failed"), "{line}");
    // The report: failures first, no claim passes on diverged strategies ("no data").
    let o = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    // "What we found" first, then the failures at the head of the experiments.
    let experiments = report
        .split("## Experiments\n\n")
        .nth(1)
        .unwrap_or_default();
    let first = experiments.lines().next().unwrap_or_default();
    assert!(first.contains("FAILED"), "{report}");
    assert!(report.contains("Absent:"), "{report}");
    let claims: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("claims.json")).unwrap()).unwrap();
    assert!(!claims.is_empty());
    for c in &claims {
        assert_eq!(c["pass"], false, "{c}");
        assert_eq!(c["no_data"], true, "{c}");
    }
}

/// A tiny E5 (two-phase SGD) experiment: 6 runs of a 2-2-2 channel CNN on 40 digits.
const E5_CONFIG: &str = r#"
[experiment]
kind = "e5"
id = "conc-e5"
title = "E5 concurrency"
[data]
train = 40
test = 20
[network]
channels = [2, 2, 2]
[phase1]
epochs = 1
learning_rate = 5e-2
minibatch = 20
[phase2]
epochs = 1
learning_rate = 5e-2
minibatch = 20
[protocol]
runs = 6
seed = 7
eval_rows = 40
probe_digits = 5
[[cases]]
name = "cross"
support = "cross"
parametrisation = "unitary"
[[cases]]
name = "skew"
support = "skew"
parametrisation = "unitary"
[profiles.quick]
"#;

/// The results of an E5 folder that must be identical to the reference: every table and
/// every weight file of every run (not the records, which hold wall times).
fn e5_results(exp_dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files(exp_dir)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.starts_with("run-") && (s.ends_with(".csv") || s.ends_with(".npy"))
        })
        .map(|p| {
            let bytes = std::fs::read(exp_dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

const E5_DONE: &str =
    "eqaug status: 6 of 6 runs finished, 0 running, 0 failed, 0 corrupt, 0 missing (1 experiment)";

/// The same guarantees for E5 as for the full-batch protocol: three identical processes at
/// once, and shards with one duplicated, over several rounds, finish every run with nothing
/// missing or damaged and the numbers of an unsharded run.
#[test]
fn e5_duplicate_processes_and_shards_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("e5.toml");
    std::fs::write(&config, E5_CONFIG).unwrap();
    let reference = tmp.path().join("ref");
    wait_ok(vec![spawn(&config, &reference, &[])]);
    let want = e5_results(&reference.join("conc-e5"));
    // 6 runs x (2 phase-1 models: epochs + weights; 2 cases: epochs, steps + weights).
    assert!(want.len() >= 6 * 6, "{}", want.len());
    for round in 0..3 {
        let out = tmp.path().join(format!("twice-{round}"));
        let logs = wait_ok((0..3).map(|_| spawn(&config, &out, &[])).collect());
        let trained: usize = logs
            .iter()
            .map(|l| l.lines().filter(|l| l.contains(" done in ")).count())
            .sum();
        assert_eq!(trained, 6, "each run trained once:\n{}", logs.join("\n"));
        let shards = tmp.path().join(format!("shards-{round}"));
        let children = ["1/3", "2/3", "3/3", "2/3"]
            .iter()
            .map(|s| spawn(&config, &shards, &["--shard", s]))
            .collect();
        wait_ok(children);
        for out in [&out, &shards] {
            assert_eq!(status(out), (Some(0), E5_DONE.to_string()), "round {round}");
            assert_eq!(e5_results(&out.join("conc-e5")), want, "round {round}");
            let left: Vec<PathBuf> = files(&out.join("conc-e5"))
                .into_iter()
                .filter(|p| p.to_string_lossy().contains(".tmp"))
                .collect();
            assert!(left.is_empty(), "temporary files left: {left:?}");
        }
    }
}

/// A changed E5 config is refused before anything is written, `--runs 1` does not lower the
/// folder's run count, a damaged run is found by `status`, and a folder holding both kinds of
/// experiment (what `cargo xtask reproduce` writes) reads as one.
#[test]
fn e5_changed_configs_fewer_runs_damage_and_mixed_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("e5.toml");
    std::fs::write(&config, E5_CONFIG.replace("runs = 6", "runs = 2")).unwrap();
    let out = tmp.path().join("out");
    wait_ok(vec![spawn(&config, &out, &[])]);
    let exp_json = out.join("conc-e5/experiment.json");
    let before = std::fs::read(&exp_json).unwrap();
    let logs = wait_ok(vec![spawn(&config, &out, &["--runs", "1"])]);
    assert!(logs[0].contains("eqaug run: 0 finished, 0 failed, 1 skipped"));
    assert_eq!(std::fs::read(&exp_json).unwrap(), before, "run count kept");

    let changed = tmp.path().join("changed.toml");
    std::fs::write(
        &changed,
        E5_CONFIG
            .replace("runs = 6", "runs = 2")
            .replace("title = \"E5 concurrency\"", "title = \"renamed\"")
            .replace(
                "learning_rate = 5e-2\nminibatch = 20\n[protocol]",
                "learning_rate = 7e-2\nminibatch = 20\n[protocol]",
            ),
    )
    .unwrap();
    let o = spawn(&changed, &out, &[]).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("different configuration"), "{err}");
    assert_eq!(std::fs::read(&exp_json).unwrap(), before, "nothing written");

    // A full-batch experiment into the same folder: status reads both.
    let fb = tmp.path().join("fb.toml");
    std::fs::write(&fb, CONFIG).unwrap();
    wait_ok(vec![spawn(&fb, &out, &["--runs", "2"])]);
    assert_eq!(
        status(&out),
        (
            Some(0),
            "eqaug status: 4 of 4 runs finished, 0 running, 0 failed, 0 corrupt, 0 missing \
             (2 experiments)"
                .to_string()
        )
    );
    // A case that lost its steps is a damaged run.
    std::fs::remove_file(out.join("conc-e5/run-001/skew/steps.csv")).unwrap();
    let (code, line) = status(&out);
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains("1 corrupt"), "{line}");
    let o = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("status")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("run-001/skew/steps.csv"), "{text}");
}
