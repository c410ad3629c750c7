//! A property test from outside: random mutations of the shipped configs, of small configs
//! of both kinds, and of the records of finished runs. Whatever the mutation, `eqaug` ends in
//! a clean result (exit 0), a clean error (exit 1 with an `error:` line, or clap's 2), never a
//! panic, an abort (a signal), a hang, or a file outside the folders it was given.
//! Deterministic: every draw comes from one seeded generator.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs eqaug with `args` in `cwd`, killing it after `limit`; returns (exit code, stderr).
fn eqaug(cwd: &Path, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eqaug"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env("RAYON_NUM_THREADS", "1")
        .env("MATMUL_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts eqaug");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("eqaug {args:?} hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Exit 0, or a clean error: never a signal (an abort) or a panic.
fn assert_clean(case: &str, (code, err): &(Option<i32>, String)) {
    eprintln!("probe exit {code:?}: {}", case.lines().next().unwrap_or(""));
    assert!(
        matches!(code, Some(0..=3)),
        "{case}: ended by a signal or an unexpected code {code:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "{case}: panicked:\n{err}");
    if *code == Some(1) {
        assert!(
            err.contains("error"),
            "{case}: exit 1 without an error line:\n{err}"
        );
    }
}

/// Every path under `dir`, relative.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A value to put in place of a key's value.
fn wild_value(rng: &mut ChaCha8Rng) -> String {
    let pool = [
        "0",
        "-1",
        "1",
        "3",
        "1000000000000",
        "1e300",
        "-1e300",
        "1e-300",
        "inf",
        "nan",
        "\"\"",
        "\"../../escaped\"",
        "\"x\"",
        "true",
        "[]",
        "[0]",
        "[100000, 100000, 100000]",
        "[1000000000000]",
        "{}",
        "\"perm\"",
        "\"rot\"",
        "2.5",
    ];
    pool.choose(rng).unwrap().to_string()
}

/// `text` with one `key = value` line given a wild value, or a line dropped, or a new key.
fn mutate_config(text: &str, rng: &mut ChaCha8Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let keyed: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = lines[i].trim_start();
            !l.starts_with('#') && !l.starts_with('[') && l.contains(" = ")
        })
        .collect();
    let Some(&i) = keyed.choose(rng) else {
        return text.into();
    };
    match rng.gen_range(0..10) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let key = lines[i].split(" = ").next().unwrap_or("x").to_string();
            lines.insert(i, format!("{key}_unknown = 1"));
        }
        _ => {
            let key = lines[i].split(" = ").next().unwrap_or("x").to_string();
            lines[i] = format!("{key} = {}", wild_value(rng));
        }
    }
    lines.join("\n") + "\n"
}

const TINY: &str = r#"[experiment]
id = "tiny"
title = "tiny"
groups = ["perm"]
size = 4
[data]
dataset = "sbm"
count = 40
seed = 1
input_offset = -0.5
[network]
preset = "e1"
channels = [2, 3, 2]
loss = "bce"
[protocol]
epochs = 2
learning_rate = 0.05
minibatch = 20
chunk_rows = 40
runs = 2
held_out = 8
checkpoints = [0, 2]
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
note = "tiny"
"#;

const TINY_E5: &str = r#"[experiment]
kind = "e5"
id = "tiny-e5"
title = "tiny E5"
[data]
train = 40
test = 20
[network]
channels = [2, 2, 2]
[phase1]
epochs = 1
learning_rate = 0.05
minibatch = 20
[phase2]
epochs = 1
learning_rate = 0.05
minibatch = 20
[protocol]
runs = 2
seed = 7
eval_rows = 40
probe_digits = 5
[[cases]]
name = "cross"
support = "cross"
parametrisation = "unitary"
[profiles.quick]
note = "tiny"
"#;

fn shipped_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// Mutated shipped configs through validation and the memory estimate (`eqaug slurm` writes
/// the script of a run without running it) and the stability command's checks.
#[test]
fn mutated_shipped_configs_end_cleanly() {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let configs = shipped_configs();
    for case in 0..80 {
        let tmp = tempfile::tempdir().unwrap();
        let file = configs.choose(&mut rng).unwrap();
        let text = mutate_config(&std::fs::read_to_string(file).unwrap(), &mut rng);
        let cfg = tmp.path().join("c.toml");
        std::fs::write(&cfg, &text).unwrap();
        let out = tmp.path().join("out");
        let name = format!("case {case} ({})", file.display());
        let r = eqaug(
            tmp.path(),
            &[
                "slurm",
                "c.toml",
                "--profile",
                "quick",
                "--array",
                "1",
                "--out",
                "out",
                "--write",
                "out/s.sbatch",
                "--max-memory",
                "4G",
            ]
            .map(String::from)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
            Duration::from_secs(60),
        );
        assert_clean(&format!("{name}: slurm:\n{text}"), &r);
        for p in tree(tmp.path()) {
            assert!(
                p.starts_with("out") || p == Path::new("c.toml"),
                "{name}: wrote {}",
                p.display()
            );
        }
        let _ = out;
    }
}

/// Mutated small configs of both kinds, run for real (with a memory limit): a clean run or a
/// clean error, and nothing written outside the output folder.
#[test]
fn mutated_small_configs_run_or_fail_cleanly() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..60 {
        let base = if case % 2 == 0 { TINY } else { TINY_E5 };
        let text = mutate_config(base, &mut rng);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("c.toml"), &text).unwrap();
        let r = eqaug(
            tmp.path(),
            &["run", "c.toml", "--out", "out", "--max-memory", "2G"],
            Duration::from_secs(120),
        );
        assert_clean(&format!("case {case}:\n{text}"), &r);
        for p in tree(tmp.path()) {
            assert!(
                p.starts_with("out") || p == Path::new("c.toml"),
                "case {case}: wrote {}:\n{text}",
                p.display()
            );
        }
        if r.0 == Some(0) {
            let s = eqaug(tmp.path(), &["status", "out"], Duration::from_secs(30));
            assert_clean(&format!("case {case}: status"), &s);
        }
    }
}

/// Truncates, corrupts or edits one file of a finished output folder.
fn mutate_record(root: &Path, rng: &mut ChaCha8Rng) -> String {
    let files: Vec<PathBuf> = tree(root)
        .into_iter()
        .filter(|p| root.join(p).is_file() && !p.to_string_lossy().contains(".locks"))
        .collect();
    let f = files.choose(rng).unwrap().clone();
    let path = root.join(&f);
    let bytes = std::fs::read(&path).unwrap();
    let what = match rng.gen_range(0..6) {
        0 => {
            let n = rng.gen_range(0..bytes.len().max(1));
            std::fs::write(&path, &bytes[..n]).unwrap();
            "truncated"
        }
        1 => {
            std::fs::write(&path, b"garbage").unwrap();
            "garbage"
        }
        2 => {
            std::fs::remove_file(&path).unwrap();
            "deleted"
        }
        _ => {
            // A number in the text replaced by a wild one.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let wild = [
                "1e12",
                "-1",
                "1000000000000",
                "null",
                "\"x\"",
                "3000000000",
                "1e400",
            ]
            .choose(rng)
            .unwrap();
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(i, c)| {
                    c.is_ascii_digit()
                        && !text[..*i].ends_with(|p: char| p.is_ascii_alphanumeric() || p == '.')
                })
                .map(|(i, _)| i)
                .collect();
            let Some(&i) = digits.choose(rng) else {
                return format!("{} (unchanged)", f.display());
            };
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                .map_or(text.len(), |e| i + e);
            let new = format!("{}{}{}", &text[..i], wild, &text[end..]);
            std::fs::write(&path, new).unwrap();
            "number replaced"
        }
    };
    format!("{} {what}", f.display())
}

/// Damaged records of finished runs of both kinds: `status`, `report` and resuming `run`
/// end cleanly.
#[test]
fn mutated_records_are_read_cleanly() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let master = tempfile::tempdir().unwrap();
    for (name, text) in [("a.toml", TINY), ("b.toml", TINY_E5)] {
        std::fs::write(master.path().join(name), text).unwrap();
        let r = eqaug(
            master.path(),
            &["run", name, "--out", "out"],
            Duration::from_secs(120),
        );
        assert_eq!(r.0, Some(0), "{}", r.1);
    }
    for case in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let copy = Command::new("cp")
            .arg("-r")
            .arg(master.path().join("out"))
            .arg(master.path().join("a.toml"))
            .arg(master.path().join("b.toml"))
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(copy.success());
        let what = mutate_record(&tmp.path().join("out"), &mut rng);
        for args in [
            &["status", "out"][..],
            &["report", "out", "--out", "out/report"][..],
            &["run", "a.toml", "--out", "out"][..],
            &["run", "b.toml", "--out", "out"][..],
        ] {
            let r = eqaug(tmp.path(), args, Duration::from_secs(120));
            assert_clean(&format!("case {case} ({what}): {args:?}"), &r);
        }
    }
}
