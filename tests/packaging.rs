//! Every package of the workspace can be published on its own: the metadata crates.io shows,
//! and the license files inside each crate's folder (copies of the workspace's, kept identical).

use std::path::Path;

const CRATES: [&str; 5] = ["groups", "nn", "data", "dynamics", "harness"];

#[test]
fn every_crate_carries_the_workspace_license_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let want = std::fs::read(root.join(file)).unwrap();
        for c in CRATES {
            let path = root.join("crates").join(c).join(file);
            let got = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (copy the workspace's {file})", path.display())
            });
            assert!(
                got == want,
                "{} differs from the workspace's {file}",
                path.display()
            );
        }
    }
}

#[test]
fn every_manifest_has_the_publishing_metadata() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifests = std::iter::once(root.join("Cargo.toml")).chain(
        CRATES
            .iter()
            .map(|c| root.join("crates").join(c).join("Cargo.toml")),
    );
    for m in manifests {
        let text = std::fs::read_to_string(&m).unwrap();
        for key in [
            "description",
            "license",
            "repository",
            "documentation",
            "readme",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key}."))),
                "{}: no `{key}`",
                m.display()
            );
        }
    }
    for file in ["CHANGELOG.md", "CITATION.cff"] {
        assert!(root.join(file).is_file(), "{file} is missing");
    }
    let cff = std::fs::read_to_string(root.join("CITATION.cff")).unwrap();
    assert!(cff.contains("2303.13458") && cff.contains("Flinth"));
}
