//! Trains the three strategies of the paper (nominal, augmented, equivariant; docs/science.md
//! §1.2 and §3) from one shared start in E on a tiny problem: sets of 5 numbers (S_5 acting on
//! the 5 points, config name `sym`), labelled by whether their sum is positive, with a
//! network of an equivariant layer, an invariant layer and a dense head. Prints, per strategy,
//! the loss and the distances from the start and to E, which show the paper's picture: the
//! equivariant strategy stays in E, augmentation stays close to it, nominal training leaves it.
//!
//! `cargo run -p eqaug-dynamics --example three_strategies`

use eqaug_dynamics::ndarray::Array2;
use eqaug_dynamics::rand::{Rng, SeedableRng};
use eqaug_dynamics::rand_chacha::ChaCha8Rng;
use eqaug_dynamics::{train, Protocol, Sampling, StrategySpec, TrainData};
use eqaug_groups::{Group, Points, Rep};
use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = 5;
    let group = Group::builtin("sym", n)?;
    let group_layer = |channels, points| LayerSpec::Group {
        channels,
        points,
        init_std: 0.5,
        constant_over_positions: false,
    };
    let spec = NetworkSpec {
        layers: vec![
            group_layer(6, Points::Base), // equivariant: 1 -> 6 channels on the points
            LayerSpec::Tanh,
            group_layer(4, Points::Trivial), // invariant: -> 4 features
            LayerSpec::Tanh,
            LayerSpec::Dense {
                out: 1,
                init_scale: 0.5,
                bias: true,
            },
            LayerSpec::Sigmoid,
        ],
    };
    let net = Network::<f64>::new(&spec, group, Rep::base(1), Loss::Bce)?;

    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let samples = 64;
    let x = Array2::from_shape_fn((samples, n), |_| rng.gen_range(-1.0..1.0));
    let targets = Array2::from_shape_fn((samples, 1), |(i, _)| {
        f64::from(u8::from(x.row(i).sum() > 0.0))
    });
    let data = TrainData {
        x,
        targets,
        input_rep: Rep::base(1),
        target_rep: None, // labels are invariant
    };
    let protocol = Protocol::default()
        .with_epochs(40)
        .with_learning_rate(0.5)
        .with_minibatch(16)
        .with_chunk_rows(64);
    let strategies = [
        StrategySpec::nominal(),
        StrategySpec::augmented(4, Sampling::PerBatch), // draws from the network's S_5
        StrategySpec::equivariant(),
    ];
    let a0 = net.init_params(&mut rng); // group layers start in E
    let out = train(&net, &data, &protocol, &strategies, &a0, 1, &mut |_, _| {})?;

    println!(
        "S_{n} on {n} points, {samples} samples, {} epochs, learning rate {}",
        protocol.epochs, protocol.learning_rate
    );
    println!(
        "{:<12} {:>10} {:>10} {:>14} {:>12}",
        "strategy", "loss(0)", "loss(end)", "||A - A0||", "||A_Eperp||"
    );
    for s in &strategies {
        let rows: Vec<_> = out
            .metrics
            .iter()
            .filter(|m| m.strategy == s.name)
            .collect();
        let (first, last) = (rows[0], rows[rows.len() - 1]);
        println!(
            "{:<12} {:>10.4} {:>10.4} {:>14.4} {:>12.3e}",
            s.name, first.loss, last.loss, last.dist_from_start, last.dist_to_e
        );
        assert!(
            last.loss < first.loss,
            "{}: the loss did not decrease",
            s.name
        );
    }
    let last = |name: &str| {
        out.metrics
            .iter()
            .rfind(|m| m.strategy == name)
            .expect("a row per strategy")
    };
    // The equivariant strategy stays in E (up to round-off); nominal training leaves it.
    assert!(last("equivariant").dist_to_e < 1e-12);
    assert!(last("nominal").dist_to_e > last("equivariant").dist_to_e);
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().unwrap();
}
