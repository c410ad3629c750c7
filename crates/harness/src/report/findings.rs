//! "What we found": the opening section of `report.md`, one paragraph per claim group of the
//! paper (docs/science.md §5, claims 1-5) and per result beyond it (stability, normalisation,
//! regulariser), written from the checked claims: each measured number with its runs and
//! interval, the figure it comes from, and plainly where a result is weak (too few runs, an
//! interval below 95% coverage) or absent.

use super::claims::{percent, Claim, Status};
use super::interval::{Method, RUNS_FOR_95};
use std::fmt::Write as _;

/// A group of claims that `report.md` summarises in one paragraph.
struct Group {
    /// Bold lead of the paragraph.
    title: &'static str,
    /// Where it comes from (docs/science.md section, in words).
    source: &'static str,
    /// Which claims belong to it.
    member: fn(&Claim) -> bool,
    /// Where to look: a link relative to the report folder, for a claim.
    link: fn(&Claim) -> Option<String>,
}

fn figure_of(c: &Claim) -> Option<String> {
    Some(format!("{}/figure.svg", c.experiment))
}

const GROUPS: &[Group] = &[
    Group {
        title: "Equivariant training stays in E",
        source: "docs/science.md §5, claim 1",
        member: |c| c.id == "eqv-in-E",
        link: figure_of,
    },
    Group {
        title: "Augmented training, started in E, leaves it far more slowly than nominal training",
        source: "docs/science.md §5, claim 2",
        member: |c| {
            matches!(
                c.id.as_str(),
                "aug-drift-below-nominal"
                    | "per-sample-drift-below-nominal"
                    | "exact-aug-in-E"
                    | "exact-aug-in-E-f64"
            ) && !c.experiment.starts_with("norm-")
        },
        link: figure_of,
    },
    Group {
        title: "Augmented and equivariant loss curves agree",
        source: "docs/science.md §5, claim 3",
        member: |c| c.id == "loss-eqv-aug-agree" && !c.experiment.starts_with("norm-"),
        link: |c| Some(format!("{}/table.md", c.experiment)),
    },
    Group {
        title: "Compatibility and unitarity decide whether a CNN stays in E ∩ L (E5)",
        source: "docs/science.md §5, claim 4",
        member: |c| c.id.starts_with("e5-"),
        link: |c| Some(format!("{}/figure.svg", c.experiment)),
    },
    Group {
        title: "The worked example: E can be a saddle of the augmented risk",
        source: "docs/science.md §5, claim 5, and §1.4",
        member: |c| c.experiment == "worked-example",
        link: |_| None,
    },
    Group {
        title: "Beyond the paper: stability of the stationary points in E",
        source: "docs/science.md §10",
        member: |c| c.id.starts_with("stability-"),
        link: |_| Some("stability/stability.md".into()),
    },
    Group {
        title: "Beyond the paper: normalisation (batch, layer, none)",
        source: "issue 15; docs/science.md §10",
        member: |c| c.id.starts_with("norm-") || c.experiment.starts_with("norm-"),
        link: |c| {
            if c.id.starts_with("norm-") && c.id != "norm-per-sample-curvature" {
                if c.id == "norm-hperp-negative" {
                    Some("stability/stability.md".into())
                } else {
                    Some("ablation-norm.md".into())
                }
            } else if c.id == "norm-per-sample-curvature" {
                Some("stability/stability.md".into())
            } else {
                Some(format!("{}/figure.svg", c.experiment))
            }
        },
    },
    Group {
        title: "Beyond the paper: a regulariser towards E",
        source: "docs/science.md §10",
        member: |c| c.id.starts_with("reg-"),
        link: |c| {
            if c.experiment == "regulariser-hessian" {
                None
            } else {
                Some(format!("{}/regularised.svg", c.experiment))
            }
        },
    },
];

/// One claim as a clause: where (linked), the number, its runs and interval, the outcome; the
/// bound too when it differs from `usual` (the bound of the claim id's first occurrence).
fn clause(c: &Claim, link: Option<String>, usual: &str) -> String {
    let place = match link {
        Some(l) => format!("[{}]({l})", c.experiment),
        None => c.experiment.clone(),
    };
    let how = match c.method {
        Method::Exact => "exact".to_string(),
        Method::ExtremeOverRuns => format!("extreme over {}", super::runs_text(c.n)),
        Method::MedianOrderStatistic | Method::ExtremeOfMedians => match (c.interval, c.coverage) {
            (Some([lo, hi]), Some(cov)) => format!(
                "[{}, {}], {}, {}{}%",
                super::table::sci(lo),
                super::table::sci(hi),
                super::runs_text(c.n),
                c.coverage_prefix(),
                percent(cov)
            ),
            _ if c.status == Status::NoData => "no run measured".to_string(),
            _ => format!("{}, too few for an interval", super::runs_text(c.n)),
        },
    };
    let outcome = match c.status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::TooFewRuns => "too few runs",
        Status::NoData => "no data",
    };
    let bound = if c.bound == usual {
        String::new()
    } else {
        format!(", bound {}", c.bound)
    };
    format!("{place} {} ({how}{bound}) {outcome}", c.measured_text())
}

/// The claims of a group as sentences, one per claim id: "`id` (bound B): clause; clause.".
fn measured_sentences(claims: &[&Claim], link: fn(&Claim) -> Option<String>) -> String {
    let mut ids: Vec<&str> = Vec::new();
    for c in claims {
        if !ids.contains(&c.id.as_str()) {
            ids.push(&c.id);
        }
    }
    ids.iter()
        .map(|id| {
            let of_id: Vec<&&Claim> = claims.iter().filter(|c| c.id == *id).collect();
            let usual = of_id[0].bound.as_str();
            let clauses: Vec<String> = of_id.iter().map(|c| clause(c, link(c), usual)).collect();
            format!("`{id}` (bound {usual}): {}.", clauses.join("; "))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The verdict of a group in words, from its claims' statuses, and what makes it weak.
fn verdict(claims: &[&Claim]) -> String {
    let count = |st: Status| claims.iter().filter(|c| c.status == st).count();
    let (pass, fail, few, none) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::TooFewRuns),
        count(Status::NoData),
    );
    let total = claims.len();
    let mut s = if pass == total && total == 1 {
        "Holds: its one check passes.".to_string()
    } else if pass == total {
        format!("Holds: all {total} checks pass.")
    } else if fail > 0 {
        format!("Does not hold everywhere: {fail} of {total} checks FAIL.")
    } else {
        format!("Not established: {pass} of {total} checks pass.")
    };
    if few > 0 {
        let _ = write!(
            s,
            " Weak: {few} rest{} on too few runs for an interval (neither PASS nor FAIL).",
            if few == 1 { "s" } else { "" }
        );
    }
    if none > 0 {
        let _ = write!(s, " Absent: {none} without data.");
    }
    let weakest = claims
        .iter()
        .filter(|c| c.status == Status::Pass)
        .filter_map(|c| c.coverage.map(|cov| (cov, c.n)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((cov, n)) = weakest {
        if cov <= 0.0 {
            let _ = write!(
                s,
                " The passes rest on few runs: the weakest claim ({}) is an extreme over several \
                 medians whose joint coverage cannot be bounded above 0 (95% needs {RUNS_FOR_95} \
                 runs per median).",
                super::runs_text(n)
            );
        } else if cov < 0.95 {
            let _ = write!(
                s,
                " The passes rest on few runs: the weakest interval ({}) is sure to cover the \
                 true median with probability {}% only (95% needs {RUNS_FOR_95} runs per median).",
                super::runs_text(n),
                percent(cov)
            );
        }
    }
    let exact = claims.iter().all(|c| c.method == Method::Exact);
    if exact && total > 0 {
        s.push_str(" Deterministic computations: no run-to-run spread.");
    }
    s
}

/// The "What we found" section of `report.md` from every checked claim. Claims in no group
/// are listed at the end so that none is left unsaid.
pub fn what_we_found(claims: &[Claim]) -> String {
    let mut out = String::from("## What we found\n\n");
    let _ = writeln!(
        out,
        "Every sentence below is generated from the measured claims ([claims.md](claims.md), \
         [claims.json](claims.json)): the number, the runs it rests on and its order-statistic \
         interval over runs, against a bound from theory (docs/science.md §5). A claim \
         passes only when the unfavourable end of its interval meets the bound; a claim on \
         fewer than 3 runs is \"too few runs\".\n"
    );
    let mut used = vec![false; claims.len()];
    for g in GROUPS {
        let members: Vec<(usize, &Claim)> = claims
            .iter()
            .enumerate()
            .filter(|(i, c)| !used[*i] && (g.member)(c))
            .collect();
        for (i, _) in &members {
            used[*i] = true;
        }
        let _ = write!(out, "**{}** ({}). ", g.title, g.source);
        if members.is_empty() {
            let _ = writeln!(out, "Not measured in this report.\n");
            continue;
        }
        let refs: Vec<&Claim> = members.iter().map(|(_, c)| *c).collect();
        let _ = writeln!(
            out,
            "{} {}\n",
            verdict(&refs),
            measured_sentences(&refs, g.link)
        );
    }
    let rest: Vec<&Claim> = claims
        .iter()
        .enumerate()
        .filter(|(i, _)| !used[*i])
        .map(|(_, c)| c)
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(
            out,
            "**Other claims**. {} {}\n",
            verdict(&rest),
            measured_sentences(&rest, |_| None)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::Bound;
    use crate::report::interval::Evidence;

    fn claim(id: &str, exp: &str, values: &[f64], bound: Bound) -> Claim {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        Claim::measured(
            id,
            exp,
            "s".into(),
            median,
            bound,
            Evidence::median_of(values),
            None,
        )
    }

    /// A maximum over six medians of 3 runs each has a Bonferroni coverage bound of 0: the
    /// findings say that it cannot be bounded, never "probability 0% only".
    #[test]
    fn an_unboundable_coverage_is_said_plainly() {
        let parts: Vec<Evidence> = (0..6)
            .map(|k| Evidence::median_of(&[0.1, 0.2 + 0.01 * k as f64, 0.3]))
            .collect();
        let ev = Evidence::max_of_medians(&parts);
        assert_eq!(ev.coverage, Some(0.0));
        let c = Claim::measured(
            "aug-drift-below-nominal",
            "norm-e1",
            "s".into(),
            0.26,
            Bound::AtMost(0.5),
            ev,
            None,
        );
        let text = verdict(&[&c]);
        assert!(text.contains("cannot be bounded above 0"), "{text}");
        assert!(!text.contains("0% only"), "{text}");
    }

    #[test]
    fn groups_say_how_many_runs_and_where_it_is_weak() {
        let claims = vec![
            claim("eqv-in-E", "e1", &[0.0, 0.0, 1e-7], Bound::AtMost(1e-5)),
            claim("eqv-in-E", "e2", &[0.0, 1e-7], Bound::AtMost(1e-5)),
            claim(
                "aug-drift-below-nominal",
                "e1",
                &[0.1, 0.2, 0.6],
                Bound::AtMost(0.5),
            ),
        ];
        let text = what_we_found(&claims);
        // Claim 1: one pass on 3 runs (75%), one with too few runs.
        let p1 = text
            .lines()
            .find(|l| l.starts_with("**Equivariant training"))
            .unwrap();
        assert!(p1.contains("Not established: 1 of 2 checks pass."), "{p1}");
        assert!(p1.contains("Weak: 1 rests on too few runs"), "{p1}");
        assert!(
            p1.contains("is sure to cover the true median with probability 75%"),
            "{p1}"
        );
        assert!(
            p1.contains("`eqv-in-E` (bound <= 1e-5): [e1](e1/figure.svg) 0 ("),
            "{p1}"
        );
        assert!(
            p1.contains(
                "[e2](e2/figure.svg) 1.00e-7 (2 runs, too few for an interval) too few runs"
            ),
            "{p1}"
        );
        // Claim 2: the median 0.2 passes but the upper end 0.6 does not: FAIL.
        let p2 = text
            .lines()
            .find(|l| l.starts_with("**Augmented training"))
            .unwrap();
        assert!(p2.contains("1 of 1 checks FAIL"), "{p2}");
        assert!(
            p2.contains("2.00e-1 ([1.00e-1, 6.00e-1], 3 runs, 75%) FAIL"),
            "{p2}"
        );
        // Groups without claims say so.
        assert!(text.contains("(E5)** (docs/science.md §5, claim 4). Not measured"));
    }
}
