//! The `serde` feature: the group descriptions round-trip through JSON with the names of the
//! configs (`cargo test -p eqaug-groups --features serde`).
#![cfg(feature = "serde")]

use eqaug_groups::{Group, GroupSpec, Points, ReferenceTask, Rep};

#[test]
fn specs_and_reps_round_trip_with_config_names() {
    for (spec, text) in [
        (
            GroupSpec::Perm { nodes: 5 },
            r#"{"group":"perm","nodes":5}"#,
        ),
        (
            GroupSpec::RotoTrans { n: 4 },
            r#"{"group":"rototrans","n":4}"#,
        ),
        (GroupSpec::Swap, r#"{"group":"swap"}"#),
        (
            GroupSpec::User {
                name: "flip".into(),
                points: 2,
                generators: vec![vec![1, 0]],
            },
            r#"{"group":"user","name":"flip","points":2,"generators":[[1,0]]}"#,
        ),
    ] {
        assert_eq!(serde_json::to_string(&spec).unwrap(), text);
        let back: GroupSpec = serde_json::from_str(text).unwrap();
        assert_eq!(back, spec);
        // The deserialised spec builds the same group as the original.
        let (a, b) = (Group::new(spec).unwrap(), Group::new(back).unwrap());
        assert_eq!((a.name(), a.order()), (b.name(), b.order()));
    }
    let rep = Rep::trivial(3);
    let text = serde_json::to_string(&rep).unwrap();
    assert_eq!(text, r#"{"channels":3,"points":"trivial"}"#);
    assert_eq!(serde_json::from_str::<Rep>(&text).unwrap(), rep);
    assert_eq!(
        serde_json::from_str::<Points>(r#""base""#).unwrap(),
        Points::Base
    );
    assert_eq!(
        serde_json::to_string(&ReferenceTask::Segmentation).unwrap(),
        r#""segmentation""#
    );
    assert!(serde_json::from_str::<Rep>(r#"{"channels":3,"points":"trivial","x":1}"#).is_err());
}
