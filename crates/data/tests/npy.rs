//! The `npy` dataset kind: round trips with `eqaug data export` output and every error.

use eqaug_data::export::write_npy_dir;
use eqaug_data::npy::{load, NpyError, NpySpec, NpyTargets};
use eqaug_data::sbm::{self, SbmParams};
use eqaug_data::shapes::{self, ShapesParams};
use eqaug_data::{Dataset, Targets};
use ndarray::{Array, Array1, Array2, Array4};
use ndarray_npy::write_npy;
use std::path::Path;

fn spec(dir: &Path, x: &str, y: &str, kind: NpyTargets, channels: usize, pos: usize) -> NpySpec {
    NpySpec {
        inputs: dir.join(x),
        targets: dir.join(y),
        target_kind: kind,
        channels,
        positions: pos,
    }
}

const BINARY: NpyTargets = NpyTargets::Binary;

#[test]
fn exported_sbm_graphs_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = sbm::generate(
        &SbmParams {
            count: 30,
            ..SbmParams::default()
        },
        3,
    );
    write_npy_dir(&d, dir.path()).unwrap();
    let back = load(&spec(dir.path(), "x.npy", "y.npy", BINARY, 1, 100)).unwrap();
    assert_eq!(back.x, d.x);
    assert_eq!(back.targets, d.targets);
    assert_eq!((back.channels, back.positions), (1, 100));
    assert!(back.check_shapes().is_ok());
}

#[test]
fn exported_shapes_masks_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = shapes::generate(
        &ShapesParams {
            count: 12,
            ..ShapesParams::default()
        },
        4,
    );
    write_npy_dir(&d, dir.path()).unwrap();
    let masks = NpyTargets::Masks { channels: None };
    let back = load(&spec(dir.path(), "x.npy", "masks.npy", masks, 1, 196)).unwrap();
    assert_eq!(back.x, d.x);
    assert_eq!(back.targets, d.targets);
    // The exported y.npy (index of the present shape) reads back as class labels.
    let classes = NpyTargets::Classes { classes: Some(2) };
    let labels = load(&spec(dir.path(), "x.npy", "y.npy", classes, 1, 196)).unwrap();
    let Targets::Masks { masks, .. } = &d.targets else {
        panic!("masks")
    };
    let Targets::Classes { labels, classes } = labels.targets else {
        panic!("classes")
    };
    assert_eq!(classes, 2);
    for (i, l) in labels.iter().enumerate() {
        let row = masks.row(i);
        assert!(row.iter().skip(l * 196).take(196).any(|&v| v == 1.0));
    }
}

#[test]
fn exported_class_labels_and_f32_inputs_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let x = Array2::from_shape_fn((6, 2 * 9), |(i, j)| (i * 18 + j) as f64 / 7.0);
    let d = Dataset {
        name: "toy".into(),
        x: x.clone(),
        channels: 2,
        positions: 9,
        targets: Targets::Classes {
            labels: vec![0, 3, 1, 2, 3, 0],
            classes: 4,
        },
    };
    write_npy_dir(&d, dir.path()).unwrap();
    let k = NpyTargets::Classes { classes: None };
    let back = load(&spec(dir.path(), "x.npy", "y.npy", k, 2, 9)).unwrap();
    assert_eq!(back.x, d.x);
    assert_eq!(back.targets, d.targets); // classes inferred as max + 1 = 4
                                         // f32 inputs of shape (N, C, P) and i32 / u8 / float labels of shape (N, 1).
    let x32 = x
        .mapv(|v| v as f32)
        .into_shape_with_order((6, 2, 9))
        .unwrap();
    write_npy(dir.path().join("x32.npy"), &x32).unwrap();
    let y = Array2::from_shape_vec((6, 1), vec![0i32, 3, 1, 2, 3, 0]).unwrap();
    write_npy(dir.path().join("yi32.npy"), &y).unwrap();
    write_npy(dir.path().join("yu8.npy"), &y.mapv(|v| v as u8)).unwrap();
    write_npy(dir.path().join("yf.npy"), &y.mapv(|v| v as f32)).unwrap();
    for y in ["yi32.npy", "yu8.npy", "yf.npy"] {
        let k = NpyTargets::Classes { classes: Some(5) };
        let back = load(&spec(dir.path(), "x32.npy", y, k, 2, 9)).unwrap();
        assert_eq!(back.x, x.mapv(|v| v as f32 as f64), "{y}");
        assert_eq!(
            back.targets,
            Targets::Classes {
                labels: vec![0, 3, 1, 2, 3, 0],
                classes: 5
            },
            "{y}"
        );
    }
}

/// Loads and returns the error and its message (which must name `file`).
fn fails(s: &NpySpec, file: &str) -> (NpyError, String) {
    let e = load(s).unwrap_err();
    let m = e.to_string();
    eprintln!("{m}");
    assert!(m.contains(file), "the message should name {file}: {m}");
    (e, m)
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// 4 graphs on 3 nodes (9 positions), binary labels.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let x = Array2::from_shape_fn((4, 9), |(i, j)| ((i + j) % 2) as f64);
        write_npy(p.join("x.npy"), &x).unwrap();
        write_npy(p.join("y.npy"), &Array1::from(vec![0.0, 1.0, 1.0, 0.0])).unwrap();
        Fixture { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
        &self,
        name: &str,
        a: &Array<A, D>,
    ) {
        write_npy(self.path().join(name), a).unwrap();
    }
}

#[test]
fn the_fixture_loads() {
    let f = Fixture::new();
    let d = load(&spec(f.path(), "x.npy", "y.npy", BINARY, 1, 9)).unwrap();
    assert_eq!((d.len(), d.features()), (4, 9));
}

#[test]
fn missing_file_is_named() {
    let f = Fixture::new();
    let (e, m) = fails(
        &spec(f.path(), "nope.npy", "y.npy", BINARY, 1, 9),
        "nope.npy",
    );
    assert!(matches!(e, NpyError::Io { .. }), "{m}");
    assert!(m.contains("inputs"), "{m}");
    let (e, _) = fails(
        &spec(f.path(), "x.npy", "gone.npy", BINARY, 1, 9),
        "gone.npy",
    );
    assert!(matches!(
        e,
        NpyError::Io {
            role: "targets",
            ..
        }
    ));
}

#[test]
fn wrong_dtype_is_named() {
    let f = Fixture::new();
    f.write("xi.npy", &Array2::<i64>::zeros((4, 9)));
    let (e, m) = fails(&spec(f.path(), "xi.npy", "y.npy", BINARY, 1, 9), "xi.npy");
    assert!(matches!(e, NpyError::Dtype { .. }), "{m}");
    assert!(m.contains("i8") && m.contains("float32 or float64"), "{m}");
}

#[test]
fn not_an_npy_file() {
    let f = Fixture::new();
    std::fs::write(f.path().join("junk.npy"), b"hello, not numpy").unwrap();
    let (e, m) = fails(
        &spec(f.path(), "junk.npy", "y.npy", BINARY, 1, 9),
        "junk.npy",
    );
    assert!(matches!(e, NpyError::Format { .. }), "{m}");
    // Truncated data.
    let bytes = std::fs::read(f.path().join("x.npy")).unwrap();
    std::fs::write(f.path().join("cut.npy"), &bytes[..bytes.len() - 8]).unwrap();
    let (e, m) = fails(&spec(f.path(), "cut.npy", "y.npy", BINARY, 1, 9), "cut.npy");
    assert!(matches!(e, NpyError::Truncated { .. }), "{m}");
    assert!(m.contains("declares shape [4, 9]"), "{m}");
}

#[test]
fn wrong_rank_is_named() {
    let f = Fixture::new();
    f.write("x1.npy", &Array1::<f64>::zeros(36));
    let (e, m) = fails(&spec(f.path(), "x1.npy", "y.npy", BINARY, 1, 9), "x1.npy");
    assert!(matches!(e, NpyError::Rank { .. }), "{m}");
    assert!(m.contains("[36]"), "{m}");
    f.write("y2.npy", &Array2::<f64>::zeros((4, 2)));
    let (e, m) = fails(&spec(f.path(), "x.npy", "y2.npy", BINARY, 1, 9), "y2.npy");
    assert!(matches!(e, NpyError::Rank { .. }), "{m}");
    assert!(m.contains("(N,)"), "{m}");
}

#[test]
fn mismatched_rows_name_both_files() {
    let f = Fixture::new();
    f.write("y5.npy", &Array1::<f64>::zeros(5));
    let (e, m) = fails(&spec(f.path(), "x.npy", "y5.npy", BINARY, 1, 9), "y5.npy");
    assert!(matches!(e, NpyError::Rows { .. }), "{m}");
    assert!(
        m.contains("x.npy") && m.contains(" 4 ") && m.contains(" 5"),
        "{m}"
    );
    // Masks too.
    f.write("m3.npy", &Array2::<f64>::zeros((3, 9)));
    let masks = NpyTargets::Masks { channels: Some(1) };
    let (e, _) = fails(&spec(f.path(), "x.npy", "m3.npy", masks, 1, 9), "m3.npy");
    assert!(matches!(e, NpyError::Rows { .. }));
}

#[test]
fn width_not_matching_the_group_is_named() {
    let f = Fixture::new();
    // 2-D rows of the wrong width.
    f.write("x8.npy", &Array2::<f64>::zeros((4, 8)));
    let (e, m) = fails(&spec(f.path(), "x8.npy", "y.npy", BINARY, 1, 9), "x8.npy");
    assert!(matches!(e, NpyError::Width { .. }), "{m}");
    assert!(m.contains("9 positions") && m.contains("1 x 9 = 9"), "{m}");
    // An image of the wrong size.
    f.write("img.npy", &Array4::<f32>::zeros((4, 1, 2, 2)));
    let (e, m) = fails(&spec(f.path(), "img.npy", "y.npy", BINARY, 1, 9), "img.npy");
    assert!(matches!(e, NpyError::Width { .. }), "{m}");
    assert!(
        m.contains("2 x 2 = 4 positions") && m.contains("acts on 9"),
        "{m}"
    );
    // The wrong number of channels.
    f.write("c2.npy", &Array4::<f64>::zeros((4, 2, 3, 3)));
    let (e, m) = fails(&spec(f.path(), "c2.npy", "y.npy", BINARY, 1, 9), "c2.npy");
    assert!(matches!(e, NpyError::Width { .. }), "{m}");
    assert!(m.contains("2 channel(s), 1 expected"), "{m}");
    // Masks not a whole number of channels.
    f.write("m.npy", &Array2::<f64>::zeros((4, 10)));
    let masks = NpyTargets::Masks { channels: None };
    let (e, m) = fails(&spec(f.path(), "x.npy", "m.npy", masks, 1, 9), "m.npy");
    assert!(matches!(e, NpyError::Width { .. }), "{m}");
}

#[test]
fn bad_values_are_named_with_their_row() {
    let f = Fixture::new();
    f.write("yb.npy", &Array1::from(vec![0.0, 1.0, 2.0, 0.0]));
    let (e, m) = fails(&spec(f.path(), "x.npy", "yb.npy", BINARY, 1, 9), "yb.npy");
    assert!(matches!(e, NpyError::Value { row: 2, .. }), "{m}");
    assert!(m.contains("binary label 2 is not 0 or 1"), "{m}");
    f.write("yc.npy", &Array1::from(vec![0i64, 1, 7, 0]));
    let k = NpyTargets::Classes { classes: Some(3) };
    let (e, m) = fails(&spec(f.path(), "x.npy", "yc.npy", k, 1, 9), "yc.npy");
    assert!(matches!(e, NpyError::Value { row: 2, .. }), "{m}");
    assert!(m.contains("0..3"), "{m}");
    f.write("yn.npy", &Array1::from(vec![0i64, -1, 1, 0]));
    let k = NpyTargets::Classes { classes: None };
    let (e, _) = fails(&spec(f.path(), "x.npy", "yn.npy", k, 1, 9), "yn.npy");
    assert!(matches!(e, NpyError::Value { row: 1, .. }));
    f.write("yf.npy", &Array1::from(vec![0.0, 0.5, 1.0, 0.0]));
    let (e, _) = fails(&spec(f.path(), "x.npy", "yf.npy", k, 1, 9), "yf.npy");
    assert!(matches!(e, NpyError::Value { row: 1, .. }));
    let mut mk = Array2::<f64>::zeros((4, 9));
    mk[[3, 4]] = 1.5;
    f.write("mk.npy", &mk);
    let masks = NpyTargets::Masks { channels: Some(1) };
    let (e, m) = fails(&spec(f.path(), "x.npy", "mk.npy", masks, 1, 9), "mk.npy");
    assert!(matches!(e, NpyError::Value { row: 3, .. }), "{m}");
    let mut xn = Array2::<f64>::zeros((4, 9));
    xn[[1, 0]] = f64::NAN;
    f.write("xn.npy", &xn);
    let (e, m) = fails(&spec(f.path(), "xn.npy", "y.npy", BINARY, 1, 9), "xn.npy");
    assert!(matches!(e, NpyError::Value { row: 1, .. }), "{m}");
}

#[test]
fn an_unusable_spec_is_rejected() {
    let f = Fixture::new();
    let e = load(&spec(f.path(), "x.npy", "y.npy", BINARY, 0, 9)).unwrap_err();
    assert!(matches!(e, NpyError::Spec(_)), "{e}");
}
