//! Mini-batches and chunks.

use eqaug_data::batching::{chunks, minibatch_count, minibatches};
use eqaug_data::sbm::{self, SbmParams};

#[test]
fn minibatches_cover_rows_in_order() {
    let b: Vec<_> = minibatches(10, 4).collect();
    assert_eq!(b, vec![0..4, 4..8, 8..10]);
    assert_eq!(minibatch_count(10, 4), 3);
    assert_eq!(minibatches(1000, 200).len(), 5);
    assert!(minibatches(0, 3).next().is_none());
}

#[test]
fn chunks_are_whole_minibatches() {
    let c: Vec<_> = chunks(10, 3, 2).collect();
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].rows.clone(), c[0].batches.clone()), (0..6, 0..2));
    assert_eq!((c[1].rows.clone(), c[1].batches.clone()), (6..10, 2..4));
    assert_eq!(
        c[1].local_minibatches().collect::<Vec<_>>(),
        vec![0..3, 3..4]
    );
    assert_eq!(c[1].minibatches().collect::<Vec<_>>(), vec![6..9, 9..10]);
    // Concatenating the chunks' mini-batches gives the plain mini-batches.
    for (rows, batch, per) in [(1000, 200, 2), (10_000, 25, 7), (17, 5, 1), (17, 5, 100)] {
        let flat: Vec<_> = chunks(rows, batch, per)
            .flat_map(|c| c.minibatches().collect::<Vec<_>>())
            .collect();
        assert_eq!(flat, minibatches(rows, batch).collect::<Vec<_>>());
    }
}

#[test]
fn dataset_views_and_subsets() {
    let mut d = sbm::generate(
        &SbmParams {
            count: 30,
            ..SbmParams::default()
        },
        3,
    );
    let chunk = chunks(d.len(), 10, 2).next().unwrap();
    let view = d.x_rows(chunk.rows.clone());
    assert_eq!(view.nrows(), 20);
    assert_eq!(view.row(13), d.x.row(13));
    let sub = d.subset(12);
    assert_eq!(sub.len(), 12);
    assert_eq!(sub.targets.len(), 12);
    assert_eq!(sub.x.row(11), d.x.row(11));
    let part = d.rows(5..9);
    assert_eq!(part.x.row(0), d.x.row(5));
    assert_eq!(d.subset(1000).len(), 30);
    let before = d.x[[0, 1]];
    d.offset_inputs(-0.5);
    assert_eq!(d.x[[0, 1]], before - 0.5);
}
