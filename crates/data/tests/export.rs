//! `.npy` export and summaries.

use eqaug_data::export::{summarize, write_npy_dir};
use eqaug_data::sbm::{self, SbmParams};
use eqaug_data::shapes::{self, ShapesParams};
use ndarray::{Array1, ArrayD};
use ndarray_npy::read_npy;

#[test]
fn npy_round_trip_sbm_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let d = sbm::generate(
        &SbmParams {
            count: 40,
            ..SbmParams::default()
        },
        1,
    );
    let files = write_npy_dir(&d, dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    let x: ArrayD<f64> = read_npy(dir.path().join("x.npy")).unwrap();
    assert_eq!(x.shape(), &[40, 1, 10, 10]);
    assert_eq!(
        x.iter().copied().collect::<Vec<_>>(),
        d.x.iter().copied().collect::<Vec<_>>()
    );
    let y: Array1<f64> = read_npy(dir.path().join("y.npy")).unwrap();
    assert_eq!(
        Some(y.to_vec()),
        match &d.targets {
            eqaug_data::Targets::Binary(v) => Some(v.clone()),
            _ => None,
        }
    );

    let s = shapes::generate(
        &ShapesParams {
            count: 30,
            ..ShapesParams::default()
        },
        2,
    );
    let out = dir.path().join("shapes");
    assert_eq!(write_npy_dir(&s, &out).unwrap().len(), 3);
    let m: ArrayD<f64> = read_npy(out.join("masks.npy")).unwrap();
    assert_eq!(m.shape(), &[30, 2, 14, 14]);
    let y: Array1<i64> = read_npy(out.join("y.npy")).unwrap();
    for (i, spec) in shapes::specs(
        &ShapesParams {
            count: 30,
            ..ShapesParams::default()
        },
        2,
    )
    .iter()
    .enumerate()
    {
        assert_eq!(y[i], spec.shape.channel() as i64);
    }
}

#[test]
fn summary_counts() {
    let d = sbm::generate(
        &SbmParams {
            count: 500,
            ..SbmParams::default()
        },
        4,
    );
    let s = summarize(&d);
    assert_eq!(s.rows, 500);
    assert_eq!(s.classes.iter().map(|c| c.1).sum::<usize>(), 500);
    assert_eq!((s.x_min, s.x_max), (0.0, 1.0));
    let text = s.to_string();
    assert!(text.contains("sbm: 500 samples"), "{text}");
}
