//! Experiment configs: every shipped config resolves for every profile; bad configs fail with
//! messages naming the file, the key and the reason.

use eqaug_harness::config::{self, ConfigError};
use std::path::{Path, PathBuf};

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_config_is_valid_in_every_profile() {
    let files = shipped();
    let stems: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for e in ["e1", "e2", "e3", "e4"] {
        assert!(
            stems.contains(&e.to_string()),
            "experiments/{e}.toml is missing"
        );
    }
    for f in &files {
        if config::kind_of(&std::fs::read_to_string(f).unwrap(), f).unwrap() == config::Kind::E5 {
            continue; // the two-phase SGD schema: tests/e5.rs
        }
        let profiles = config::profiles(f).unwrap();
        assert!(
            profiles.contains(&"paper".to_string()),
            "{}: no paper profile",
            f.display()
        );
        for want in ["quick", "medium"] {
            assert!(
                profiles.contains(&want.to_string()),
                "{}: no {want} profile",
                f.display()
            );
        }
        for p in profiles {
            let exps = config::load(f, &p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!exps.is_empty());
            for e in exps {
                assert!(
                    !e.note.is_empty(),
                    "{} {p}: the profile should say what it is",
                    f.display()
                );
                let group = e.build_group().unwrap();
                let net = eqaug_nn::Network::<f32>::new(
                    &e.network,
                    group,
                    eqaug_groups::Rep::base(1),
                    e.loss,
                );
                assert!(net.is_ok(), "{} {p}: {:?}", f.display(), net.err());
                if p == "quick" {
                    // Every quick experiment rests on at least 3 runs, the fewest for an
                    // interval over runs (docs/science.md §5).
                    assert!(
                        e.protocol.runs >= 3,
                        "{} quick: {} runs",
                        f.display(),
                        e.protocol.runs
                    );
                }
                if p == "medium" {
                    // The medium profile: at least 10 runs, each no longer than the paper's.
                    assert!(
                        e.protocol.runs >= 10,
                        "{} medium: {} runs",
                        f.display(),
                        e.protocol.runs
                    );
                    assert!(e.protocol.epochs <= 50);
                }
                if p == "paper" {
                    // The paper profile keeps the paper's protocol (docs/science.md §4).
                    assert_eq!(e.protocol.runs, 30);
                    assert_eq!(e.protocol.epochs, 50);
                    assert!(e
                        .strategies
                        .iter()
                        .filter(|(s, _)| s.name == "augmented")
                        .all(|(s, _)| s.passes == 25));
                }
            }
        }
    }
}

/// The tiny experiment shared by the harness tests.
const GOOD: &str = include_str!("data/tiny.toml");

fn parse(text: &str) -> Result<Vec<config::Experiment>, ConfigError> {
    config::parse(text, Path::new("bad.toml"), "quick")
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn the_tiny_config_is_valid() {
    let e = parse(GOOD).unwrap();
    assert_eq!(e[0].strategies.len(), 3);
}

#[test]
fn unknown_keys_are_rejected_with_file_and_key() {
    let m = err(&GOOD.replace("epochs = 3", "epochs = 3\nepoch_count = 4"));
    assert!(m.contains("bad.toml") && m.contains("epoch_count"), "{m}");
    let m = err(&GOOD.replace(
        "note = \"tiny\"",
        "note = \"tiny\"\nprotocol = { epoks = 2 }",
    ));
    assert!(
        m.contains("bad.toml") && m.contains("epoks") && m.contains("quick"),
        "{m}"
    );
    let m = err(&GOOD.replace("note = \"tiny\"", "note = \"tiny\"\nnetwrk = { }"));
    assert!(m.contains("profiles.quick.netwrk"), "{m}");
}

#[test]
fn out_of_range_values_are_rejected_with_the_reason() {
    let m = err(&GOOD.replace("learning_rate = 0.05", "learning_rate = -0.05"));
    assert!(
        m.contains("protocol.learning_rate") && m.contains("positive"),
        "{m}"
    );
    let m = err(&GOOD.replace("runs = 4", "runs = 0"));
    assert!(m.contains("protocol.runs"), "{m}");
    let m = err(&GOOD.replace("count = 40", "count = 5"));
    assert!(m.contains("data.count"), "{m}");
    let m = err(&GOOD.replace("size = 6", "size = 7"));
    assert!(m.contains("experiment.size") && m.contains("even"), "{m}");
    let m = err(&GOOD.replace("channels = [2, 3, 2]", "channels = [2, 3]"));
    assert!(m.contains("network.channels"), "{m}");
}

#[test]
fn missing_or_unknown_groups_are_rejected() {
    let m = err(&GOOD.replace("groups = [\"perm\"]\n", ""));
    assert!(m.contains("groups"), "{m}");
    let m = err(&GOOD.replace("groups = [\"perm\"]", "groups = []"));
    assert!(m.contains("experiment.groups"), "{m}");
    let m = err(&GOOD.replace("groups = [\"perm\"]", "groups = [\"hexagonal\"]"));
    assert!(
        m.contains("experiment.groups") && m.contains("hexagonal"),
        "{m}"
    );
}

#[test]
fn exact_augmentation_needs_an_enumerable_group() {
    let text = GOOD
        .replace("size = 6", "size = 10")
        .replace("passes = 2", "passes = 2\nsampling = \"exact\"");
    let m = err(&text);
    assert!(m.contains("sampling") && m.contains("enumerable"), "{m}");
}

#[test]
fn unknown_profile_lists_the_available_ones() {
    let m = config::parse(GOOD, Path::new("bad.toml"), "huge")
        .unwrap_err()
        .to_string();
    assert!(m.contains("huge") && m.contains("quick"), "{m}");
}

#[test]
fn a_user_defined_group_can_be_configured() {
    // The transposition of adjacency entries (i,j) <-> (j,i) on 6 nodes: a user group of order 2.
    let n = 6usize;
    let transpose: Vec<String> = (0..n * n)
        .map(|s| ((s % n) * n + s / n).to_string())
        .collect();
    let text = GOOD
        .replace("groups = [\"perm\"]", "groups = [\"transpose\"]")
        .replace(
            "size = 6\n",
            &format!(
                "size = 6\nuser_groups = {{ transpose = [[{}]] }}\n",
                transpose.join(", ")
            ),
        );
    let e = parse(&text).unwrap();
    let g = e[0].build_group().unwrap();
    assert_eq!(g.order(), 2);
}

/// The user-group example of experiments/README.md parses, builds and runs.
#[test]
fn the_readme_example_runs() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/README.md"),
    )
    .unwrap();
    let start = readme
        .find("```toml\n[experiment]\nid = \"my-transpose\"")
        .expect("example");
    let body = &readme[start + "```toml\n".len()..];
    let text = &body[..body.find("```").unwrap()];
    let exps = config::parse(text, Path::new("my-transpose.toml"), "quick").unwrap();
    assert_eq!(exps[0].build_group().unwrap().order(), 2);
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = eqaug_harness::runner::RunOptions::new(tmp.path());
    opts.runs = Some(1);
    let s = eqaug_harness::runner::run_experiment(&exps[0], &opts).unwrap();
    assert_eq!(s.finished, vec![0]);
    assert!(s.failures.is_empty());
}

#[test]
fn the_run_fingerprint_ignores_the_stability_section_only() {
    let key = |text: &str| eqaug_harness::runner::config_key(&parse(text).unwrap()[0]);
    let base = key(GOOD);
    let with_stability = format!("{GOOD}\n[stability]\nruns = 1\nlanczos_steps = 12\n");
    let other_stability = with_stability.replace("lanczos_steps = 12", "lanczos_steps = 30");
    assert_eq!(
        key(&with_stability),
        base,
        "adding [stability] re-keys the runs"
    );
    assert_eq!(
        key(&other_stability),
        base,
        "editing [stability] re-keys the runs"
    );
    let other_epochs = GOOD.replace("epochs = 3", "epochs = 4");
    assert_ne!(
        key(&other_epochs),
        base,
        "the epochs must change the fingerprint"
    );
}
