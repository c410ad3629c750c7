//! The worked instability example of docs/science.md §1.4 built from eqaug-nn layers: G = Z_2
//! swapping two coordinates, Phi_a(x) = softplus(a_1 x_1 + a_2 x_2) (an invariant group layer
//! 1 x 2 followed by softplus), data {((1,1), ln 2), ((1,-1), 2)}, R = 1/2 mean (Phi - y)^2.

use eqaug_nn::{Group, LayerSpec, Loss, Network, NetworkSpec, Points, Rep};
use ndarray::array;

#[test]
fn nominal_gradient_at_the_equivariant_point() {
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::Group {
                channels: 1,
                points: Points::Trivial,
                init_std: 1.0,
                constant_over_positions: false,
            },
            LayerSpec::Softplus,
        ],
    };
    let net = Network::<f64>::new(
        &spec,
        Group::builtin("swap", 2).unwrap(),
        Rep::base(1),
        Loss::Mse,
    )
    .unwrap();
    assert_eq!(net.num_params(), 2);
    let p = net.zeros(); // a* = 0, in E
    let x = array![[1.0, 1.0], [1.0, -1.0]];
    let y = array![[2f64.ln()], [2.0]];
    let mut g = net.zeros();
    let mut ws = net.workspace(2);
    // loss_and_grad returns sum_rows (Phi - y)^2 = 4 R
    let l = net
        .loss_and_grad(&p, x.view(), y.view(), 2, &mut g, &mut ws)
        .unwrap()
        / 4.0;
    approx::assert_relative_eq!(l, 0.25 * (2.0 - 2f64.ln()).powi(2), max_relative = 1e-14);
    let grad: Vec<f64> = g.as_slice().iter().map(|v| v / 4.0).collect();
    let k = (2f64.ln() - 2.0) / 4.0; // about -0.3267, along (1, -1)
    approx::assert_relative_eq!(grad[0], k, max_relative = 1e-14);
    approx::assert_relative_eq!(grad[1], -k, max_relative = 1e-14);
    // projected onto E (span(1,1)) the gradient vanishes: a* is stationary for R_eqv
    g.project_group_layers();
    assert!(g.norm() < 1e-16);
}
