//! IDX reading and writing, the shipped subset, the 14 x 14 resize.

use eqaug_data::idx::{self, MAGIC_IMAGES, MAGIC_LABELS};
use eqaug_data::mnist::{self, Mnist};
use eqaug_data::{DataError, Targets};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7 % 256) as u8).collect();
    let labels = vec![3u8, 0, 9];
    for gz in [false, true] {
        let (ip, lp) = (
            dir.path().join(format!("i{gz}")),
            dir.path().join(format!("l{gz}")),
        );
        idx::write_mnist_pair(&ip, &lp, 4, 5, &pixels, &labels, gz).unwrap();
        // The raw file is exactly header + data, written independently here.
        if !gz {
            let mut expect = header(MAGIC_IMAGES, &[3, 4, 5]);
            expect.extend_from_slice(&pixels);
            assert_eq!(std::fs::read(&ip).unwrap(), expect);
        } else {
            assert_eq!(&std::fs::read(&ip).unwrap()[..2], &[0x1f, 0x8b]);
        }
        let m = mnist::load_idx_pair(&ip, &lp).unwrap();
        assert_eq!((m.len(), m.rows, m.cols), (3, 4, 5));
        assert_eq!(m.pixels, pixels);
        assert_eq!(m.labels, labels);
        assert_eq!(m.image(1), &pixels[20..40]);
    }
}

#[test]
fn load_idx_dir_finds_standard_names() {
    let dir = tempfile::tempdir().unwrap();
    let err = mnist::load_idx_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let px = vec![1u8; 2 * 28 * 28];
    idx::write_mnist_pair(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &dir.path().join("train-labels-idx1-ubyte.gz"),
        28,
        28,
        &px,
        &[1, 2],
        true,
    )
    .unwrap();
    let px10 = vec![2u8; 28 * 28];
    idx::write_mnist_pair(
        &dir.path().join("t10k-images-idx3-ubyte"),
        &dir.path().join("t10k-labels-idx1-ubyte"),
        28,
        28,
        &px10,
        &[7],
        false,
    )
    .unwrap();
    // The test set is preferred; the training set is available by prefix.
    assert_eq!(mnist::load_idx_dir(dir.path()).unwrap().labels, vec![7]);
    assert_eq!(
        mnist::load_idx_split(dir.path(), "train-").unwrap().labels,
        vec![1, 2]
    );
    // A missing label file is named.
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let msg = mnist::load_idx_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
}

#[test]
fn bad_files_give_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("images.bin");
    let mut good = header(MAGIC_IMAGES, &[2, 3, 3]);
    good.extend_from_slice(&[5u8; 18]);

    // Truncated data (raw and gzip).
    for bytes in [
        good[..good.len() - 1].to_vec(),
        gzip(&good[..good.len() - 4]),
    ] {
        write(&p, &bytes);
        match idx::read_images(&p).unwrap_err() {
            DataError::Truncated {
                path,
                what,
                expected,
                found,
            } => {
                assert_eq!(path, p);
                assert_eq!(what, "data");
                assert_eq!(expected, 18);
                assert!(found < 18);
            }
            e => panic!("wrong error {e}"),
        }
    }
    // Truncated header.
    write(&p, &good[..9]);
    assert!(matches!(
        idx::read_images(&p),
        Err(DataError::Truncated { what: "header", .. })
    ));
    write(&p, &good[..2]);
    assert!(matches!(
        idx::read_images(&p),
        Err(DataError::Truncated { what: "header", .. })
    ));
    // Trailing data.
    let mut long = good.clone();
    long.push(0);
    write(&p, &long);
    assert!(matches!(
        idx::read_images(&p),
        Err(DataError::TrailingData { .. })
    ));
    // Wrong magic: a label file read as images, and garbage.
    let mut labels = header(MAGIC_LABELS, &[2]);
    labels.extend_from_slice(&[1, 2]);
    write(&p, &labels);
    match idx::read_images(&p).unwrap_err() {
        e @ DataError::BadMagic {
            found: MAGIC_LABELS,
            expected: MAGIC_IMAGES,
            ..
        } => {
            assert!(e.to_string().contains("images.bin"), "{e}");
        }
        e => panic!("wrong error {e}"),
    }
    write(&p, b"not an idx file at all");
    assert!(matches!(
        idx::read_labels(&p),
        Err(DataError::BadMagic { .. })
    ));
    // Overflowing dimensions: rejected before any allocation.
    write(&p, &header(MAGIC_IMAGES, &[u32::MAX, u32::MAX, u32::MAX]));
    let e = idx::read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::BadDimensions { .. }), "{e}");
    assert!(e.to_string().contains("overflow"), "{e}");
    // A zero image side.
    write(&p, &header(MAGIC_IMAGES, &[1, 0, 28]));
    assert!(matches!(
        idx::read_images(&p),
        Err(DataError::BadDimensions { .. })
    ));
    // A huge announced size with little data is reported as truncated, not an OOM.
    write(&p, &header(MAGIC_IMAGES, &[60_000_000, 28, 28]));
    assert!(matches!(
        idx::read_images(&p),
        Err(DataError::Truncated { .. })
    ));
    // Missing file.
    let e = idx::read_images(&dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(e, DataError::Io { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
}

#[test]
fn mismatched_counts_and_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = (dir.path().join("imgs"), dir.path().join("labs"));
    idx::write_idx_u8(&ip, &[3, 2, 2], &[0; 12], false).unwrap();
    idx::write_idx_u8(&lp, &[2], &[1, 2], true).unwrap();
    match mnist::load_idx_pair(&ip, &lp).unwrap_err() {
        e @ DataError::CountMismatch {
            images: 3,
            labels: 2,
            ..
        } => {
            let msg = e.to_string();
            assert!(msg.contains("imgs") && msg.contains("labs"), "{msg}");
        }
        e => panic!("wrong error {e}"),
    }
    idx::write_idx_u8(&lp, &[3], &[1, 12, 2], false).unwrap();
    assert!(matches!(
        mnist::load_idx_pair(&ip, &lp),
        Err(DataError::BadLabel {
            index: 1,
            label: 12,
            ..
        })
    ));
    // The writer refuses inconsistent sizes.
    assert!(idx::write_idx_u8(&lp, &[4], &[1, 2], false).is_err());
}

fn shipped() -> Mnist {
    mnist::load_shipped().expect("the shipped subset is part of the repository")
}

#[test]
fn shipped_subset_loads_with_all_classes_shuffled() {
    let m = shipped();
    assert_eq!((m.len(), m.rows, m.cols), (10_000, 28, 28));
    let counts = m.class_counts();
    eprintln!("shipped subset class counts: {counts:?}");
    assert_eq!(
        counts,
        [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
    // Not sorted by class: in a shuffled order about 10 % of neighbours share a label.
    let same = m.labels.windows(2).filter(|w| w[0] == w[1]).count() as f64 / 9999.0;
    assert!((0.08..0.12).contains(&same), "neighbour agreement {same}");
    // Every class appears among the first 100 (the first mini-batches are mixed).
    let mut first = [false; 10];
    m.labels[..100]
        .iter()
        .for_each(|&l| first[l as usize] = true);
    assert!(first.iter().all(|&b| b));
    // Real digits: mostly background, some ink, full 0..255 range.
    let mean = m.pixels.iter().map(|&p| p as f64).sum::<f64>() / m.pixels.len() as f64 / 255.0;
    assert!((0.11..0.15).contains(&mean), "mean pixel {mean}");
    assert_eq!(*m.pixels.iter().max().unwrap(), 255);
}

struct Fixture {
    digit: u8,
    input: Vec<u8>,
    output: Vec<f64>,
}

fn fixture() -> Vec<Fixture> {
    let text = include_str!("data/mnist_resize14.csv");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(head.len(), 2 + 784 + 196);
    assert_eq!((head[2], head[786]), ("in0", "out0"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Fixture {
                digit: f[0].parse().unwrap(),
                input: f[2..786].iter().map(|v| v.parse().unwrap()).collect(),
                output: f[786..].iter().map(|v| v.parse().unwrap()).collect(),
            }
        })
        .collect()
}

#[test]
fn resize_matches_pytorch_fixture() {
    let fx = fixture();
    assert_eq!(fx.len(), 30);
    let mut worst = 0.0f64;
    for f in &fx {
        let img: Vec<f64> = f.input.iter().map(|&p| p as f64 / 255.0).collect();
        let out = mnist::resize_28_to_14(&img);
        for (a, b) in out.iter().zip(&f.output) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("resize: max abs deviation from the PyTorch fixture {worst:.2e}");
    assert!(worst < 1e-6, "max deviation {worst}");
}

#[test]
fn resize_properties() {
    // Constants stay constant (weights are normalised, also at the borders).
    let out = mnist::resize_28_to_14(&[0.7; 784]);
    out.iter()
        .for_each(|&v| approx::assert_abs_diff_eq!(v, 0.7, epsilon = 1e-14));
    // An interior output pixel is the 1/8, 3/8, 3/8, 1/8 separable filter.
    let mut img = vec![0.0; 784];
    img[28 * 9 + 9] = 1.0; // source (9, 9): taps of outputs 4 (weight 3/8) and 5 (1/8)
    let out = mnist::resize_28_to_14(&img);
    approx::assert_abs_diff_eq!(out[14 * 4 + 4], 9.0 / 64.0, epsilon = 1e-15);
    approx::assert_abs_diff_eq!(out[14 * 5 + 4], 3.0 / 64.0, epsilon = 1e-15);
    approx::assert_abs_diff_eq!(out[14 * 5 + 5], 1.0 / 64.0, epsilon = 1e-15);
    approx::assert_abs_diff_eq!(out.iter().sum::<f64>(), 16.0 / 64.0, epsilon = 1e-15);
}

#[test]
fn fixture_digits_are_in_the_shipped_subset() {
    let m = shipped();
    let fx = fixture();
    for f in &fx {
        let i = (0..m.len()).find(|&i| m.image(i) == f.input.as_slice());
        let i = i.unwrap_or_else(|| panic!("fixture digit {} not in the shipped subset", f.digit));
        assert_eq!(m.labels[i], f.digit);
    }
}

#[test]
fn datasets_from_mnist() {
    let m = shipped();
    let d = mnist::mnist14(&m, Some(500));
    d.check_shapes().unwrap();
    assert_eq!((d.len(), d.channels, d.positions), (500, 1, 196));
    assert!(d.x.iter().all(|&v| (0.0..=1.0 + 1e-12).contains(&v)));
    let img: Vec<f64> = m.image(7).iter().map(|&p| p as f64 / 255.0).collect();
    assert_eq!(d.x.row(7).to_vec(), mnist::resize_28_to_14(&img).to_vec());
    match &d.targets {
        Targets::Classes {
            labels,
            classes: 10,
        } => assert_eq!(labels[7], m.labels[7] as usize),
        t => panic!("{t:?}"),
    }
    let s = mnist::standardised(&m, None);
    assert_eq!((s.len(), s.positions), (10_000, 784));
    // Standardisation with the MNIST training constants: about zero mean, unit spread.
    let mean = s.x.mean().unwrap();
    let std = s.x.std(0.0);
    eprintln!("standardised shipped subset: mean {mean:.4}, std {std:.4}");
    assert!(
        mean.abs() < 0.05 && (std - 1.0).abs() < 0.05,
        "{mean} {std}"
    );
    approx::assert_abs_diff_eq!(s.x[[3, 0]], -0.1307 / 0.3081, epsilon = 1e-12);
}

#[test]
fn data_dir_override_reports_what_is_missing() {
    // Run in a child process so the variable does not leak into other tests.
    if std::env::var_os("EQAUG_TEST_CHILD").is_some() {
        let e = mnist::load_shipped().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Missing { .. }));
        assert!(
            msg.contains("cargo xtask data") && msg.contains("EQAUG_DATA_DIR"),
            "{msg}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "data_dir_override_reports_what_is_missing",
            "--exact",
            "--nocapture",
        ])
        .env("EQAUG_TEST_CHILD", "1")
        .env(mnist::DATA_DIR_ENV, dir.path())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A folder of already resized 14 x 14 IDX files (as `data.mnist_dir`): loading works, the
/// 14 x 14 resize is an error naming the file and both sizes, not a panic.
#[test]
fn mnist14_of_14x14_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 196).map(|i| (i % 251) as u8).collect();
    mnist::write_mnist_pair(
        &dir.path().join("t10k-images-idx3-ubyte"),
        &dir.path().join("t10k-labels-idx1-ubyte"),
        14,
        14,
        &pixels,
        &[1, 2, 3],
        false,
    )
    .unwrap();
    let m = mnist::load_idx_dir(dir.path()).unwrap();
    assert_eq!((m.len(), m.rows, m.cols), (3, 14, 14));
    let e = mnist::try_mnist14(&m, None).unwrap_err();
    assert!(matches!(
        e,
        DataError::WrongImageSize {
            rows: 14,
            cols: 14,
            expected: (28, 28),
            ..
        }
    ));
    let msg = e.to_string();
    assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains("14 x 14") && msg.contains("28 x 28"), "{msg}");
    // 28 x 28 images still give the same data as the panicking variant.
    let m = shipped();
    assert_eq!(
        mnist::try_mnist14(&m, Some(5)).unwrap().x,
        mnist::mnist14(&m, Some(5)).x
    );
}

#[test]
fn shipped_subset_loads_from_a_given_folder() {
    let dir = mnist::shipped_dir();
    let from = mnist::load_shipped_from(&dir).unwrap();
    assert_eq!(from, shipped());
    let empty = tempfile::tempdir().unwrap();
    let e = mnist::load_shipped_from(empty.path()).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("load_shipped_from"), "{e}");
}
