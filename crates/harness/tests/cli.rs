//! The `eqaug` binary on inputs that used to abort or mislead: huge sizes, `--runs 0`,
//! stale export files, `eqaug status` and `eqaug slurm`.

mod common;

use common::{assert_clean_error, eqaug, stderr, stdout, write_config, TINY};
use std::path::Path;
use std::process::Command;

#[test]
fn huge_sizes_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let cfg = write_config(
        dir.path(),
        &TINY.replace("count = 40", "count = 10000000000"),
    );
    let o = eqaug(&["run", &cfg, "--out", &out_s, "--max-memory", "4G"]);
    assert_clean_error(&o);
    let e = stderr(&o);
    assert!(
        e.contains("data.count = 10000000000") && e.contains("4.0 GB"),
        "{e}"
    );
    assert!(!out.exists(), "nothing written for a refused config");
    // Without --max-memory the limit is the machine's available memory.
    let o = eqaug(&["run", &cfg, "--out", &out_s]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("MemAvailable"), "{}", stderr(&o));

    let cfg = write_config(
        dir.path(),
        &TINY.replace("channels = [2, 3, 2]", "channels = [100000000, 3, 2]"),
    );
    let o = eqaug(&["run", &cfg, "--out", &out_s, "--max-memory", "4G"]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("network.channels"), "{}", stderr(&o));

    let o = eqaug(&[
        "inspect",
        "--group",
        "rot",
        "--size",
        "200",
        "--max-memory",
        "8G",
    ]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("--size = 200"), "{}", stderr(&o));
    let o = eqaug(&["inspect", "--group", "rot", "--size", "400"]);
    assert_clean_error(&o);
    let o = eqaug(&["inspect", "--group", "rot", "--size", "6", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn zero_runs_are_rejected_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TINY);
    let out = dir.path().join("out").display().to_string();
    let o = eqaug(&["run", &cfg, "--runs", "0", "--out", &out]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap's usage error: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--runs"), "{}", stderr(&o));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn export_removes_the_stale_files_of_another_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let out_s = out.display().to_string();
    let o = eqaug(&[
        "data",
        "export",
        "--dataset",
        "shapes",
        "--count",
        "6",
        "--out",
        &out_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("masks.npy").is_file());
    let o = eqaug(&[
        "data",
        "export",
        "--dataset",
        "sbm",
        "--count",
        "6",
        "--out",
        &out_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("masks.npy").exists(), "stale masks.npy removed");
    assert!(stdout(&o).contains("removed"), "{}", stdout(&o));
    assert!(out.join("x.npy").is_file() && out.join("y.npy").is_file());
}

#[test]
fn status_of_a_run_folder_and_its_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TINY);
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    // Two of three runs (shards 1 and 2 of 3).
    for shard in ["1/3", "2/3"] {
        let o = eqaug(&["run", &cfg, "--shard", shard, "--out", &out_s]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = eqaug(&["status", &out_s]);
    assert_eq!(o.status.code(), Some(3), "incomplete: {}", stdout(&o));
    let last = stdout(&o).lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last,
        "eqaug status: 2 of 3 runs finished, 0 running, 0 failed, 0 corrupt, 1 missing (1 experiment)"
    );
    assert!(stdout(&o).contains("missing: 2"), "{}", stdout(&o));
    let o = eqaug(&["run", &cfg, "--shard", "3/3", "--out", &out_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = eqaug(&["status", "-q", &out.join("tiny").display().to_string()]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    // A truncated metrics.csv is reported as corrupt, naming the file.
    let m = out.join("tiny/run-001/metrics.csv");
    let text = std::fs::read_to_string(&m).unwrap();
    let keep: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&m, keep.join("\n") + "\n").unwrap();
    let o = eqaug(&["status", &out_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("corrupt: run-001") && stdout(&o).contains("run-001/metrics.csv"),
        "{}",
        stdout(&o)
    );
    // ... and the report refuses it, naming the file, instead of "(n=2)".
    let o = eqaug(&["report", &out_s]);
    assert_clean_error(&o);
    assert!(
        stderr(&o).contains("run-001/metrics.csv") && stderr(&o).contains("truncated"),
        "{}",
        stderr(&o)
    );
    // Not an output folder.
    let o = eqaug(&["status", &dir.path().display().to_string()]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("no experiment.json"), "{}", stderr(&o));
}

#[test]
fn slurm_writes_a_resumable_array_script() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TINY);
    let out = dir.path().join("runs");
    let script = dir.path().join("job.sbatch");
    let o = eqaug(&[
        "slurm",
        &cfg,
        "--profile",
        "quick",
        "--array",
        "3",
        "--cpus",
        "2",
        "--time",
        "1:00:00",
        "--out",
        &out.display().to_string(),
        "--write",
        &script.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = std::fs::read_to_string(&script).unwrap();
    assert!(s.contains("#SBATCH --array=0-2\n"), "{s}");
    assert!(s.contains("#SBATCH --cpus-per-task=2\n"), "{s}");
    assert!(s.contains("#SBATCH --time=1:00:00\n"), "{s}");
    assert!(s.contains(&format!("--out {}", out.display())), "{s}");
    assert!(
        out.join("slurm-logs").is_dir(),
        "Slurm needs the log folder"
    );
    // More tasks than runs: refused.
    let o = eqaug(&["slurm", &cfg, "--profile", "quick", "--array", "4"]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("--array 4"), "{}", stderr(&o));
    // A stepped array covers every shard: tasks 0, 2, 4 of --array=0-4:2.
    let runs = dir.path().join("stepped");
    for id in ["0", "2", "4"] {
        let o = Command::new(env!("CARGO_BIN_EXE_eqaug"))
            .args(["run", &cfg, "--out", &runs.display().to_string()])
            .env("SLURM_ARRAY_TASK_ID", id)
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .env("SLURM_ARRAY_TASK_MAX", "4")
            .env("SLURM_ARRAY_TASK_STEP", "2")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = eqaug(&["status", &runs.display().to_string()]);
    assert!(
        o.status.success(),
        "every run of the stepped array: {}",
        stdout(&o)
    );
}

#[test]
fn only_groups_leaving_a_group_without_strategies_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = TINY
        .replace(r#"groups = ["perm"]"#, r#"groups = ["perm", "trivial"]"#)
        .replace(
            "kind = \"nominal\"\n",
            "kind = \"nominal\"\nonly_groups = [\"perm\"]\n",
        )
        .replace(
            "kind = \"equivariant\"\n",
            "kind = \"equivariant\"\nonly_groups = [\"perm\"]\n",
        );
    let cfg = write_config(dir.path(), &text);
    let out = dir.path().join("out");
    let o = eqaug(&["run", &cfg, "--out", &out.display().to_string()]);
    assert_clean_error(&o);
    assert!(
        stderr(&o).contains("only_groups") && stderr(&o).contains("`trivial`"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn a_network_that_does_not_fit_the_data_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = TINY
        .replace(r#"preset = "e1""#, r#"preset = "e3""#)
        .replace("channels = [2, 3, 2]", "channels = [2, 2, 2]");
    let cfg = write_config(dir.path(), &text);
    let out = dir.path().join("out");
    let o = eqaug(&["run", &cfg, "--out", &out.display().to_string()]);
    assert_clean_error(&o);
    assert!(!out.exists(), "nothing written: {}", stderr(&o));
}

/// Names that become folders follow one rule: a strategy named like a path, or empty, is
/// refused naming the key, and nothing is written (anywhere).
#[test]
fn names_that_are_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a/b/out");
    for (from, to, key) in [
        (
            "name = \"nominal\"",
            "name = \"../../../ESCAPED\"",
            "strategies[0].name",
        ),
        ("name = \"nominal\"", "name = \"\"", "strategies[0].name"),
        ("id = \"tiny\"", "id = \"..\"", "experiment.id"),
        ("id = \"tiny\"", "id = \".hidden\"", "experiment.id"),
    ] {
        let cfg = write_config(dir.path(), &TINY.replace(from, to));
        let o = eqaug(&["run", &cfg, "--out", &out.display().to_string()]);
        assert_clean_error(&o);
        assert!(stderr(&o).contains(key), "{to}: {}", stderr(&o));
    }
    assert!(!dir.path().join("a").exists());
    assert!(!dir.path().join("ESCAPED").exists());
}

/// `inf` and `nan` are refused at validation, naming the key (not by every run failing).
#[test]
fn non_finite_values_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for v in ["inf", "nan", "-inf"] {
        let text = TINY.replace("seed = 1\n", &format!("seed = 1\ninput_offset = {v}\n"));
        let cfg = write_config(dir.path(), &text);
        let o = eqaug(&[
            "run",
            &cfg,
            "--out",
            &dir.path().join("o").display().to_string(),
        ]);
        assert_clean_error(&o);
        assert!(stderr(&o).contains("data.input_offset"), "{}", stderr(&o));
    }
}

/// Resubmitting over runs whose strategy failed says so and exits non-zero.
#[test]
fn resuming_over_failed_runs_is_not_success() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &TINY.replace("learning_rate = 0.05", "learning_rate = 1e300"),
    );
    let out = dir.path().join("out").display().to_string();
    let first = eqaug(&["run", &cfg, "--out", &out]);
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let again = eqaug(&["run", &cfg, "--out", &out]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again)
            .contains("eqaug run: 0 finished, 0 failed, 3 skipped (3 of them failed earlier)"),
        "{}",
        stderr(&again)
    );
}

/// Two configs into one folder at once: whatever the interleaving, the folder never holds
/// runs of both (one process is refused, before it writes a run).
#[test]
fn two_configs_racing_into_one_folder_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &TINY.replace("runs = 3", "runs = 6"));
    for round in 0..3 {
        let out = dir.path().join(format!("out-{round}"));
        let spawn = |seed: &str| {
            Command::new(env!("CARGO_BIN_EXE_eqaug"))
                .args([
                    "run",
                    &cfg,
                    "--seed",
                    seed,
                    "--out",
                    &out.display().to_string(),
                ])
                .env_remove("SLURM_ARRAY_TASK_ID")
                .env_remove("SLURM_ARRAY_TASK_COUNT")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn("1"), spawn("2"));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(
            a.status.success() != b.status.success(),
            "exactly one is refused:\n{}\n{}",
            stderr(&a),
            stderr(&b)
        );
        let keys: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|r| {
                let p = out.join(format!("tiny/run-{r:03}/run.json"));
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
                Some(v["config_key"].as_str()?.to_string())
            })
            .collect();
        assert_eq!(keys.len(), 1, "round {round}: runs of one config only");
    }
}

/// `eqaug slurm` refuses arguments that would inject lines into its script.
#[test]
fn slurm_refuses_control_characters_in_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TINY);
    for flag in ["--account", "--partition", "--time", "--mem"] {
        let o = eqaug(&[
            "slurm",
            &cfg,
            "--profile",
            "quick",
            "--array",
            "2",
            flag,
            "x\necho INJECTED",
        ]);
        assert_clean_error(&o);
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
        assert!(!stdout(&o).contains("INJECTED"), "{}", stdout(&o));
    }
}

/// `--runs` and `runs` beyond the limit are refused (they used to abort on the allocation).
#[test]
fn absurd_run_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TINY);
    let out = dir.path().join("o").display().to_string();
    let o = eqaug(&["run", &cfg, "--runs", "1000000000000", "--out", &out]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap's usage error: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--runs"), "{}", stderr(&o));
    let cfg = write_config(
        dir.path(),
        &TINY.replace("runs = 3", "runs = 1000000000000"),
    );
    let o = eqaug(&["run", &cfg, "--out", &out]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("protocol.runs"), "{}", stderr(&o));
    // A record claiming 10^12 runs: status refuses it instead of hanging.
    let exp = dir.path().join("st/e");
    std::fs::create_dir_all(&exp).unwrap();
    std::fs::write(
        exp.join("experiment.json"),
        r#"{"experiment": "e", "runs": 1000000000000, "strategies": []}"#,
    )
    .unwrap();
    let o = eqaug(&["status", &dir.path().join("st").display().to_string()]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("runs"), "{}", stderr(&o));
}

/// A run whose weights blow up but stay finite (lr 1e30 in f64, lr 1e10 in f32) is failed,
/// stays out of the claims, and its records read back (an equivariance error of `null`).
#[test]
fn a_finite_divergence_is_a_failure() {
    for (lr, precision, epochs) in [("1e30", "f64", 3), ("1e10", "f32", 3), ("1e30", "f64", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let text = TINY
            .replace("learning_rate = 0.05", &format!("learning_rate = {lr}"))
            .replace("epochs = 2", &format!("epochs = {epochs}\nheld_out = 8"))
            .replace(
                "runs = 3",
                &format!("runs = 2\nprecision = \"{precision}\""),
            );
        let cfg = write_config(dir.path(), &text);
        let out = dir.path().join("out").display().to_string();
        let o = eqaug(&["run", &cfg, "--out", &out]);
        assert_eq!(o.status.code(), Some(1), "lr {lr}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("eqaug run: 0 finished, 2 failed"),
            "lr {lr}: {}",
            stderr(&o)
        );
        let o = eqaug(&["report", &out]);
        assert!(o.status.success(), "lr {lr}: {}", stderr(&o));
        let claims: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(Path::new(&out).join("claims.json")).unwrap())
                .unwrap();
        for c in &claims {
            if c["id"] == "eqv-in-E" || c["id"].as_str().is_some_and(|i| i.starts_with("nominal")) {
                assert_eq!(c["pass"], false, "lr {lr}: {c}");
            }
        }
        let o = eqaug(&["status", &out]);
        assert_eq!(o.status.code(), Some(2), "lr {lr}: {}", stdout(&o));
    }
}

/// One definition of a usable run: `status`, `report` and resuming agree on a metrics.csv
/// missing an interior row, a loss that is not a number, a truncated weight file and a
/// manifest that is not JSON.
#[test]
fn status_report_and_resume_agree_on_damaged_runs() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 4] = [
        ("interior row", |run| {
            let p = run.join("metrics.csv");
            let text = std::fs::read_to_string(&p).unwrap();
            let mut lines: Vec<&str> = text.lines().collect();
            lines.remove(2); // nominal, epoch 1
            std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        }),
        ("garbage loss", |run| {
            let p = run.join("metrics.csv");
            let text = std::fs::read_to_string(&p).unwrap();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let mut cells: Vec<String> = lines[1].split(',').map(String::from).collect();
            cells[2] = "garbage".into();
            lines[1] = cells.join(",");
            std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        }),
        ("truncated weights", |run| {
            let dir = run.join("checkpoints/nominal/epoch-002");
            let npy = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "npy"))
                .unwrap();
            let bytes = std::fs::read(&npy).unwrap();
            std::fs::write(&npy, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("garbage manifest", |run| {
            std::fs::write(
                run.join("checkpoints/equivariant/epoch-002/manifest.json"),
                "garbage",
            )
            .unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), &TINY.replace("runs = 3", "runs = 2"));
        let out = dir.path().join("out");
        let o = eqaug(&["run", &cfg, "--out", &out.display().to_string()]);
        assert!(o.status.success(), "{}", stderr(&o));
        damage(&out.join("tiny/run-001"));
        let o = eqaug(&["status", &out.display().to_string()]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stdout(&o));
        assert!(stdout(&o).contains("1 corrupt"), "{what}: {}", stdout(&o));
        let o = eqaug(&["report", &out.display().to_string()]);
        assert_clean_error(&o);
        assert!(stderr(&o).contains("run-001"), "{what}: {}", stderr(&o));
        let o = eqaug(&["run", &cfg, "--out", &out.display().to_string()]);
        assert_clean_error(&o);
        assert!(stderr(&o).contains("run-001"), "{what}: {}", stderr(&o));
    }
}

/// A `.npy` header as numpy writes it (version 1), followed by `data`.
fn npy_file(path: &Path, descr: &str, shape: &str, data: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Sizes stated by files are refused before anything is allocated: a `.npy` header claiming
/// (10^12, 100), a class label of 3e9 with the class count inferred, `data export --count 1e11`.
#[test]
fn sizes_claimed_by_files_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let floats: Vec<u8> = (0..50 * 16)
        .flat_map(|i| (i as f64 * 0.01).to_le_bytes())
        .collect();
    npy_file(&d.join("x.npy"), "<f8", "(50, 16)", &floats);
    npy_file(&d.join("huge.npy"), "<f8", "(1000000000000, 100)", &[]);
    let labels: Vec<u8> = (0..50)
        .flat_map(|i: i64| (if i == 0 { 3_000_000_000 } else { i % 2 }).to_le_bytes())
        .collect();
    npy_file(&d.join("y.npy"), "<i8", "(50,)", &labels);
    let config = |inputs: &str| {
        let (inputs, targets) = (d.join(inputs), d.join("y.npy"));
        let (inputs, targets) = (inputs.display(), targets.display());
        format!(
            "[experiment]\nid = \"npy\"\ntitle = \"npy\"\ngroups = [\"perm\"]\nsize = 4\n\
             [data]\ndataset = \"npy\"\ncount = 40\ninputs = \"{inputs}\"\ntargets = \"{targets}\"\n\
             targets_kind = \"classes\"\n[network]\npreset = \"e2\"\nchannels = [2]\n\
             loss = \"cross_entropy_logits\"\n[protocol]\nepochs = 1\nlearning_rate = 0.05\n\
             minibatch = 20\nruns = 1\n[[strategies]]\nname = \"nominal\"\nkind = \"nominal\"\n\
             [profiles.quick]\n"
        )
    };
    let out = d.join("out").display().to_string();
    std::fs::write(d.join("huge.toml"), config("huge.npy")).unwrap();
    let o = eqaug(&[
        "run",
        &d.join("huge.toml").display().to_string(),
        "--out",
        &out,
    ]);
    assert_clean_error(&o);
    assert!(
        stderr(&o).contains("huge.npy") && stderr(&o).contains("declares"),
        "{}",
        stderr(&o)
    );
    std::fs::write(d.join("label.toml"), config("x.npy")).unwrap();
    let o = eqaug(&[
        "run",
        &d.join("label.toml").display().to_string(),
        "--out",
        &out,
    ]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("3000000000"), "{}", stderr(&o));
    let o = eqaug(&[
        "data",
        "export",
        "--dataset",
        "sbm",
        "--count",
        "100000000000",
        "--out",
        &d.join("ex").display().to_string(),
    ]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("--count"), "{}", stderr(&o));
}

/// `eqaug list | head -1`: a reader that goes away ends eqaug quietly, not with a panic.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let experiments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .arg("list")
        .arg(&experiments)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
