//! `table.md`: medians over runs with the order-statistic interval of each median
//! (docs/science.md §5) at a few epochs, one table per quantity, one column per strategy.

use super::aggregate::{Quartiles, SummaryRow};
use super::input::Experiment;
use eqaug_nn::Loss;
use std::fmt::Write as _;

/// Formats a number in scientific notation with 3 significant digits (`1.23e-4`); `NaN`,
/// `inf` and `-inf` as such.
pub fn sci(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x == 0.0 {
        "0".into()
    } else {
        format!("{x:.2e}")
    }
}

/// The epochs shown in tables for an experiment whose last epoch is `last`: 0, 1, 5, 10, 25,
/// 50 (and `last` if beyond 50) for paper-length runs; 0, 1 and about last/10, last/5,
/// last/2, last for shorter ones.
pub fn table_epochs(last: usize) -> Vec<usize> {
    let mut e = if last >= 50 {
        vec![0, 1, 5, 10, 25, 50, last]
    } else {
        let frac = |d: f64| (last as f64 / d).round() as usize;
        vec![0, 1.min(last), frac(10.0), frac(5.0), frac(2.0), last]
    };
    e.sort_unstable();
    e.dedup();
    e
}

/// Picks one quantity of a summary row.
type Getter = fn(&SummaryRow) -> &Quartiles;

/// A table cell: `median [lo, hi]` with the order-statistic interval of the median, with
/// `(n=k)` when fewer than all `total` runs reached this epoch (the others diverged earlier)
/// and its coverage when that differs from the table's (`cov`); the median alone when there
/// are too few runs for an interval.
fn cell(row: Option<&SummaryRow>, get: Getter, total: usize) -> String {
    let Some(row) = row else {
        return "–".into();
    };
    let q = get(row);
    let mut text = if q.median.is_nan() {
        "NaN".into()
    } else {
        match q.ci {
            Some(ci) if ci.lo != ci.hi => {
                format!("{} [{}, {}]", sci(q.median), sci(ci.lo), sci(ci.hi))
            }
            _ => sci(q.median),
        }
    };
    if row.runs < total {
        match q.ci {
            Some(ci) => text.push_str(&format!(
                " (n={}, {}%)",
                row.runs,
                super::claims::percent(ci.coverage)
            )),
            None => text.push_str(&format!(" (n={}, no interval)", row.runs)),
        }
    }
    text
}

/// The sentence of a table's header on its cells: median over runs and the interval's
/// coverage at `runs` runs, or why there is none.
pub fn cells_sentence(runs: usize) -> String {
    let ci = super::interval::median_interval(&vec![0.0; runs]);
    match ci {
        Some(ci) => format!(
            "Cells: median over the {} [order-statistic interval of the median: x_({}) and \
             x_({}) of the sorted runs, coverage {}% (docs/science.md §5)]",
            super::runs_text(runs),
            ci.k,
            runs + 1 - ci.k,
            super::claims::percent(ci.coverage)
        ),
        None => format!(
            "Cells: median over the {} (too few runs for an interval: it needs {}; \
             docs/science.md §5)",
            super::runs_text(runs),
            super::interval::MIN_RUNS
        ),
    }
}

/// Renders `table.md` for an experiment from its summary rows.
pub fn table_markdown(exp: &Experiment, rows: &[SummaryRow]) -> String {
    let mut out = String::new();
    let m = &exp.meta;
    let _ = writeln!(
        out,
        "# {}{}\n",
        exp.id,
        m.title
            .as_deref()
            .map(|t| format!(": {t}"))
            .unwrap_or_default()
    );
    let mut facts = Vec::new();
    if let Some(g) = &m.group {
        facts.push(format!("group `{g}`"));
    }
    if let Some(p) = &m.profile {
        facts.push(format!("profile `{p}`"));
    }
    facts.push(format!(
        "precision {}",
        m.precision.unwrap_or_default().name()
    ));
    facts.push(loss_fact(m.loss, m.output_softmax));
    facts.push(format!("{} finished", super::runs_text(exp.runs.len())));
    facts.push(format!("last epoch {}", exp.last_epoch()));
    if let Some(w) = m.wall_seconds {
        facts.push(format!("training time {w:.1} s summed over runs"));
    }
    let _ = writeln!(out, "{}.\n", facts.join(", "));
    let _ = writeln!(
        out,
        "{}, (n=k, its coverage) where only k runs reached the epoch; the quartiles are in \
         `summary.csv`. \
         ||A - A0|| is the distance from the start, ||A_Eperp|| the distance to the \
         equivariant subspace E (Frobenius norms over the group layers).\n",
        cells_sentence(exp.runs.len())
    );

    let epochs = table_epochs(exp.last_epoch());
    let quantities: [(&str, Getter); 3] = [
        ("Loss", |r| &r.loss),
        ("||A - A0||", |r| &r.dist_from_start),
        ("||A_Eperp||", |r| &r.dist_to_e),
    ];
    for (title, get) in quantities {
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "| epoch | {} |", exp.strategies.join(" | "));
        let _ = writeln!(out, "|---:|{}", "---|".repeat(exp.strategies.len()));
        for &epoch in &epochs {
            let cells: Vec<String> = exp
                .strategies
                .iter()
                .map(|s| {
                    let row = rows.iter().find(|r| r.epoch == epoch && &r.strategy == s);
                    cell(row, get, exp.runs.len())
                })
                .collect();
            let _ = writeln!(out, "| {epoch} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }

    held_out_tables(exp, &epochs, &mut out);

    let failures: Vec<String> = exp
        .runs
        .iter()
        .flat_map(|r| {
            r.failed.iter().map(move |f| {
                format!(
                    "- run {}: `{}` failed at epoch {}: {}",
                    r.index, f.strategy, f.epoch, f.error
                )
            })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "## Failed runs\n\n{}\n", failures.join("\n"));
    }
    out
}

/// Median over runs of the values present (`None` if none).
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// The held-out sections: test loss / accuracy / mean IoU per strategy (median over runs) at
/// the table's epochs, and the held-out equivariance error at the last epoch. Sections
/// without data are left out.
fn held_out_tables(exp: &Experiment, epochs: &[usize], out: &mut String) {
    type Pick = fn(&super::input::EpochMetrics) -> Option<f64>;
    let quantities: [(&str, Pick); 3] = [
        ("Test loss (held-out samples)", |m| m.test_loss),
        (
            "Test accuracy (held-out samples; per mask entry for segmentation)",
            |m| m.test_accuracy,
        ),
        ("Test mean IoU (held-out masks, threshold 0.5)", |m| {
            m.test_mean_iou
        }),
    ];
    for (title, pick) in quantities {
        let any = exp
            .runs
            .iter()
            .flat_map(|r| r.metrics.values().flatten())
            .any(|m| pick(m).is_some());
        if !any {
            continue;
        }
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "Median over runs.\n");
        let _ = writeln!(out, "| epoch | {} |", exp.strategies.join(" | "));
        let _ = writeln!(out, "|---:|{}", "---|".repeat(exp.strategies.len()));
        for &epoch in epochs {
            let cells: Vec<String> = exp
                .strategies
                .iter()
                .map(|s| {
                    let v = exp
                        .runs
                        .iter()
                        .filter_map(|r| r.at(s, epoch).and_then(pick))
                        .collect();
                    median(v).map_or_else(|| "–".into(), |x| format!("{x:.4}"))
                })
                .collect();
            let _ = writeln!(out, "| {epoch} | {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    let any = exp.runs.iter().any(|r| !r.equivariance_error.is_empty());
    if any {
        let _ = writeln!(
            out,
            "## Held-out equivariance error at the last epoch\n\n\
             max and mean of |Phi(g x) - g Phi(x)| over the held-out samples, output entries \
             and 8 sampled g; median over runs.\n"
        );
        let _ = writeln!(out, "| strategy | max | mean |");
        let _ = writeln!(out, "|---|---:|---:|");
        for s in &exp.strategies {
            let get = |i: usize| {
                median(
                    exp.runs
                        .iter()
                        .filter_map(|r| r.equivariance_error.get(s).map(|e| e[i]))
                        .collect(),
                )
            };
            if let (Some(max), Some(mean)) = (get(0), get(1)) {
                let _ = writeln!(out, "| {s} | {} | {} |", sci(max), sci(mean));
            }
        }
        out.push('\n');
    }
}

/// Which loss the experiment trained with, and on what: so that a reader of the table knows
/// whether a cross-entropy saw logits or softmax probabilities (the "double softmax").
pub fn loss_fact(loss: Option<Loss>, output_softmax: Option<bool>) -> String {
    let Some(loss) = loss else {
        return "loss not recorded".into();
    };
    let on = match output_softmax {
        Some(true) => " on the output of a softmax layer",
        Some(false) => " on the network's output (no softmax layer)",
        None => "",
    };
    let double = matches!(
        loss,
        Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities
    ) && output_softmax == Some(true);
    format!(
        "loss `{}`{on}{}",
        loss.name(),
        if double { " (double softmax)" } else { "" }
    )
}
