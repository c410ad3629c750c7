//! Builds a small dense network from layers (`Dense`, `Pointwise`) and trains it by
//! full-batch gradient descent on a toy two-class problem (points inside or outside a circle),
//! using only the public API: `loss_and_grad` for the gradient of each step, `axpy` for the
//! step (docs/science.md §3 describes the losses and the protocol of the experiments).
//!
//! `cargo run -p eqaug-nn --example train_dense`

use std::sync::Arc;

use eqaug_nn::layers::{Dense, Layer, Pointwise, PointwiseFn};
use eqaug_nn::ndarray::Array2;
use eqaug_nn::rand::rngs::StdRng;
use eqaug_nn::rand::{Rng, SeedableRng};
use eqaug_nn::{Loss, NnError, Sequential};

fn main() -> Result<(), NnError> {
    // 2 inputs -> 16 tanh units -> 2 logits
    let layers: Vec<Arc<dyn Layer<f64>>> = vec![
        Arc::new(Dense::new(2, 16, 1.0, true)?),
        Arc::new(Pointwise::new(PointwiseFn::Tanh, 16)?),
        Arc::new(Dense::new(16, 2, 0.5, true)?),
    ];
    let net = Sequential::new(layers, Loss::CrossEntropyLogits, 1)?;
    let mut rng = StdRng::seed_from_u64(1);

    // 200 points in [-1, 1]^2, class 1 inside the circle of radius 0.6
    let n = 200;
    let x = Array2::<f64>::from_shape_fn((n, 2), |_| rng.gen_range(-1.0..1.0));
    let mut t = Array2::<f64>::zeros((n, 2));
    for i in 0..n {
        let inside = x[[i, 0]].powi(2) + x[[i, 1]].powi(2) < 0.36;
        t[[i, usize::from(inside)]] = 1.0;
    }

    let mut params = net.init_params(&mut rng);
    let (mut grads, mut ws) = (net.zeros(), net.workspace(n));
    let accuracy = |out: eqaug_nn::ndarray::ArrayView2<'_, f64>| {
        let right = (0..n)
            .filter(|&i| (out[[i, 1]] > out[[i, 0]]) == (t[[i, 1]] == 1.0))
            .count();
        right as f64 / n as f64
    };
    let mut first = None;
    for step in 0..=300 {
        // loss_and_grad overwrites `grads`: no zeroing needed between steps
        let loss =
            net.loss_and_grad(&params, x.view(), t.view(), n, &mut grads, &mut ws)? / n as f64;
        let acc = accuracy(net.output(&ws)?);
        first.get_or_insert(loss);
        if step % 100 == 0 {
            println!("step {step:3}: mean loss {loss:.4}, accuracy {acc:.3}");
        }
        grads.scale(1.0 / n as f64); // gradient of the mean loss
        params.axpy(-1.0, &grads);
    }
    let out = net.forward(&params, x.view(), n, &mut ws)?;
    let final_acc = accuracy(out);
    let final_loss = net.loss(&params, x.view(), t.view(), n, &mut ws)? / n as f64;
    println!(
        "final: mean loss {final_loss:.4} (from {:.4}), accuracy {final_acc:.3}",
        first.unwrap()
    );
    assert!(
        final_loss < first.unwrap(),
        "training did not lower the loss"
    );

    // A chunk of the wrong width is an error naming the argument, not a panic.
    let wrong = Array2::<f64>::zeros((4, 3));
    match net.forward(&params, wrong.view(), 4, &mut ws) {
        Err(e) => println!("wrong input: {e}"),
        Ok(_) => panic!("a 3-feature input was accepted by a 2-feature network"),
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    main().unwrap();
}
