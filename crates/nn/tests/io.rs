//! Parameters: save/load round trip, casts, metrics; spec serde; network construction errors.

mod common;

use common::*;
use eqaug_nn::{
    Group, LayerSpec, Loss, Network, NetworkSpec, NnError, NormOver, Normalisation, Params, Points,
    Rep,
};

fn e2_net<T: eqaug_nn::Real>() -> Network<T> {
    Network::new(
        &NetworkSpec::invariant_classifier(4, 3, 5, Normalisation::Batch),
        Group::builtin("trans2d", 4).unwrap(),
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .unwrap()
}

#[test]
fn save_load_round_trip() {
    let net = e2_net::<f32>();
    let mut r = rng(1);
    let mut p = net.init_params(&mut r).cast::<f64>();
    perturb(&mut p, &mut r, 0.1);
    let p32: Params<f32> = p.cast();
    let dir = tempfile::tempdir().unwrap();
    p32.save_npy(dir.path()).unwrap();
    let back = p32.load_npy(dir.path()).unwrap();
    assert_eq!(back.as_slice(), p32.as_slice());
    // loading into the other precision
    let back64 = p.load_npy(dir.path()).unwrap();
    assert_eq!(back64.cast::<f32>().as_slice(), p32.as_slice());
    // f64 round trip is exact as well
    p.save_npy(dir.path()).unwrap();
    assert_eq!(p.load_npy(dir.path()).unwrap().as_slice(), p.as_slice());

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    let tensors = manifest["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), p.num_tensors());
    assert_eq!(tensors[0]["kind"], "group");
    assert_eq!(tensors[0]["rep_in"]["points"], "base");
    assert_eq!(tensors[2]["rep_out"]["points"], "trivial");
    assert_eq!(tensors[0]["shape"], serde_json::json!([48, 16]));
    assert!(dir.path().join("layer0.weight.npy").exists());
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));

    // a different network refuses the files
    let other = Network::<f64>::new(
        &NetworkSpec::invariant_classifier(4, 2, 5, Normalisation::Batch),
        Group::builtin("trans2d", 4).unwrap(),
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .unwrap();
    let err = other.zeros().load_npy(dir.path()).unwrap_err();
    assert!(matches!(err, NnError::Format { .. }), "{err}");
}

#[test]
fn parameter_metrics() {
    let net = e2_net::<f64>();
    let mut r = rng(2);
    let a0 = net.init_params(&mut r);
    assert_eq!(a0.num_group_layers(), 3);
    let mut a = a0.clone();
    perturb(&mut a, &mut r, 0.01);
    let per = a.distance_per_group_layer(&a0);
    let tot = per.iter().map(|v| v * v).sum::<f64>().sqrt();
    approx::assert_relative_eq!(a.distance_group_layers(&a0), tot, epsilon = 1e-14);
    assert!(a.distance(&a0) > tot);
    let off = a.distance_to_equivariant();
    assert!(off > 0.0);
    let mut b = a.clone();
    b.project_group_layers();
    approx::assert_relative_eq!(a.distance_group_layers(&b), off, max_relative = 1e-12);
    // dense and norm parameters untouched by the projection
    for t in a.tensors().filter(|t| !t.is_group()) {
        assert_eq!(t.data, b.tensor(t.index).data);
    }
    let mut c = a.clone();
    c.axpy(-1.0, &a);
    assert_eq!(c.norm(), 0.0);
    assert!(a.is_finite());
    approx::assert_relative_eq!(a.dot(&a), a.norm() * a.norm(), max_relative = 1e-12);
    // f32 and f64 initialisations agree to rounding
    let p32 = e2_net::<f32>().init_params(&mut rng(9));
    let p64 = net.init_params(&mut rng(9));
    assert_eq!(p32.as_slice(), p64.cast::<f32>().as_slice());
    // init: batch-norm scale 1, shift 0, invariant layer constant over positions
    let scale = p64.tensor(p64.tensor_index("layer6.scale").unwrap());
    assert!(scale.data.iter().all(|&v| v == 1.0));
    let inv = p64
        .tensor(p64.tensor_index("layer4.weight").unwrap())
        .matrix();
    assert_eq!(inv.dim(), (3, 48));
    assert!((0..16).all(|s| inv[[1, 16 + s]] == inv[[1, 16]]));
}

#[test]
fn spec_serde_round_trip_and_errors() {
    let spec = NetworkSpec::invariant_binary_classifier_paper();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""type":"group""#) && json.contains(r#""points":"trivial""#));
    let back: NetworkSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    let bad = r#"{"layers":[{"type":"tanh","slope":1.0}]}"#;
    assert!(serde_json::from_str::<NetworkSpec>(bad).is_err());
    let bad = r#"{"layers":[{"type":"dense","out":3,"init_scale":1.0,"bais":true}]}"#;
    assert!(serde_json::from_str::<NetworkSpec>(bad).is_err());
    let bad = r#"{"layers":[{"type":"conv"}]}"#;
    assert!(serde_json::from_str::<NetworkSpec>(bad).is_err());
    let minimal = r#"{"layers":[{"type":"group","channels":2,"points":"base","init_std":0.1},
                                {"type":"batch_norm","over":"channels"},{"type":"sigmoid"}]}"#;
    let s: NetworkSpec = serde_json::from_str(minimal).unwrap();
    assert_eq!(
        s.layers[1],
        LayerSpec::BatchNorm {
            over: NormOver::Channels
        }
    );
    assert_eq!(
        serde_json::to_string(&Loss::CrossEntropyOnProbabilities).unwrap(),
        r#""cross_entropy_on_probabilities""#
    );
}

#[test]
fn construction_errors_name_the_layer() {
    let g = Group::builtin("rot", 4).unwrap();
    let dense_on_base = NetworkSpec {
        layers: vec![
            LayerSpec::Group {
                channels: 2,
                points: Points::Base,
                init_std: 0.1,
                constant_over_positions: false,
            },
            LayerSpec::Tanh,
            LayerSpec::Dense {
                out: 3,
                init_scale: 1.0,
                bias: false,
            },
        ],
    };
    let err = Network::<f32>::new(&dense_on_base, g.clone(), Rep::base(1), Loss::Mse).unwrap_err();
    assert!(matches!(err, NnError::Shape { layer: 2, .. }), "{err}");
    assert!(
        err.to_string().contains("2 channel(s) x 16 position(s)"),
        "{err}"
    );
    let empty = NetworkSpec { layers: vec![] };
    assert!(matches!(
        Network::<f32>::new(&empty, g.clone(), Rep::base(1), Loss::Mse),
        Err(NnError::EmptyNetwork)
    ));
    let one_class = NetworkSpec {
        layers: vec![LayerSpec::Group {
            channels: 1,
            points: Points::Trivial,
            init_std: 0.1,
            constant_over_positions: false,
        }],
    };
    assert!(matches!(
        Network::<f32>::new(
            &one_class,
            g.clone(),
            Rep::base(1),
            Loss::CrossEntropyLogits
        ),
        Err(NnError::Loss { .. })
    ));
    let net = Network::<f32>::new(
        &NetworkSpec::equivariant_segmenter_paper(),
        Group::builtin("rot", 14).unwrap(),
        Rep::base(1),
        Loss::SegmentationBce,
    )
    .unwrap();
    assert_eq!(net.output_rep(), Rep::base(2));
    assert_eq!(net.output_width(), 2 * 196);
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Network<f32>>();
    check::<Params<f64>>();
    check::<eqaug_nn::Workspace<f32>>();
    check::<NetworkSpec>();
}
