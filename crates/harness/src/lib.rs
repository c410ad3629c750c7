//! eqaug-harness: experiment configs, runner, reports and the `eqaug` binary.
#![warn(missing_docs)]

pub mod config;
pub mod io;
pub mod report;
pub mod runner;
pub mod schema;
pub mod setup;

/// The worked example of SPEC section 1 as claims in the report's format (`id`, `experiment`,
/// `statement`, `measured`, `bound`, `pass`).
pub fn worked_example_claims(
    w: &eqaug_dynamics::worked_example::WorkedExample,
) -> Vec<serde_json::Value> {
    let ln2 = std::f64::consts::LN_2;
    let c = |id: &str, statement: &str, measured: f64, bound: String, pass: bool| {
        serde_json::json!({"id": id, "experiment": "worked-example", "statement": statement,
            "measured": measured, "bound": bound, "pass": pass})
    };
    let g = w.grad_aug_at_zero[0].abs().max(w.grad_aug_at_zero[1].abs());
    let e_perp = (ln2 - 1.0) / 4.0;
    let esc = (w.escape_point[0] - 0.6209)
        .abs()
        .max((w.escape_point[1] + 0.6209).abs());
    vec![
        c("worked-example-stationary", "the augmented gradient vanishes at a* = 0 (max |component|)", g, "<= 1e-12".into(), g <= 1e-12),
        c("worked-example-hessian-e", "Hess R_aug(0) eigenvalue along E is 1/4", w.eigenvalue_e, "0.25 +- 1e-6".into(), (w.eigenvalue_e - 0.25).abs() <= 1e-6),
        c("worked-example-hessian-perp", "Hess R_aug(0) eigenvalue along E-perp is (ln 2 - 1)/4 < 0: a* is a saddle of R_aug", w.eigenvalue_perp, format!("{e_perp:.6} +- 1e-6"), (w.eigenvalue_perp - e_perp).abs() <= 1e-6),
        c("worked-example-escape", "augmented gradient flow from 1e-6 (1,-1) escapes E to (0.6209, -0.6209) (max deviation)", esc, "<= 1e-3".into(), esc <= 1e-3),
        c("worked-example-risk-drop", "R_aug falls from 0.426966 to 0.412976 along the escape (value at the end)", w.r_aug_end, "0.412976 +- 1e-6".into(), (w.r_aug_end - 0.412976).abs() <= 1e-6),
    ]
}
