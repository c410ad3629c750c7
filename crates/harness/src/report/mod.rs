//! `eqaug report DIR`: aggregates finished runs into tables, figures and checked claims.
//!
//! Input (written by the runner): `DIR/<experiment>/experiment.json` and
//! `DIR/<experiment>/run-NNN/{metrics.csv, run.json}` (see [`input`]). Output, per experiment
//! folder: `summary.csv` (median, quartiles and the median's order-statistic interval over runs
//! per epoch and strategy), `table.md`,
//! `figure.svg`, `equivariance.svg` (the held-out equivariance error, when `run.json` records
//! it) and, with an `augmented-reference` strategy, `reference.svg`; at `DIR` level:
//! `claims.json`, `claims.md` (each claim with its runs and interval, [`interval`]) and
//! `report.md` (opening with "What we found", [`findings`], then links to everything). An optional
//! `DIR/worked_example.json` (an array of claims, measured elsewhere) is merged into the
//! claims.

pub mod ablation;
pub mod aggregate;
pub mod claims;
pub mod e5;
mod error;
pub mod figure;
pub mod findings;
pub mod input;
pub mod interval;
pub mod regularised;
pub mod stability;
pub mod table;

pub use claims::{Bound, Claim, CLAIMS};
use error::write_file;
pub use error::ReportError;

use crate::schema::{self, SchemaError};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `n` runs in words: "1 run", "2 runs" (generated text says "1 run", never "1 runs").
pub fn runs_text(n: usize) -> String {
    if n == 1 {
        "1 run".into()
    } else {
        format!("{n} runs")
    }
}

/// What `report` did.
#[derive(Debug, Clone, Default)]
pub struct ReportSummary {
    /// Experiment ids found, in folder order.
    pub experiments: Vec<String>,
    /// All claims checked (including merged worked-example claims).
    pub claims: Vec<Claim>,
    /// Number of claims that pass.
    pub claims_passed: usize,
    /// Number of claims that fail (measured and out of bounds).
    pub claims_failed: usize,
    /// Number of claims without data (every run failed or lacks the strategies).
    pub claims_no_data: usize,
    /// Number of claims resting on fewer runs than an interval needs (neither PASS nor FAIL).
    pub claims_too_few_runs: usize,
    /// Strategy failures recorded in the runs, one line each (`e1 run-003: ...`).
    pub run_failures: Vec<String>,
    /// Every file written.
    pub files_written: Vec<PathBuf>,
}

/// The report's part of one experiment, for `report.md`.
struct ExperimentReport {
    id: String,
    folder: String,
    title: Option<String>,
    runs: usize,
    files: Vec<(String, String)>,
    figures: Vec<String>,
}

/// Aggregates every experiment under `dir` and writes tables, figures and claims.
///
/// Errors if `dir` is unreadable, holds no experiment folder, or an input file is malformed
/// (the error names the file). Failed claims are not errors: they are reported in the
/// summary and in `claims.md`.
pub fn report(dir: &Path) -> Result<ReportSummary, ReportError> {
    report_into(dir, dir)
}

/// As [`report`], but writes everything under `out` (one sub-folder per experiment, mirroring
/// `dir`), so that bulky run folders (checkpoints) and the report can live apart. Every run's
/// metrics are also gathered into `<out>/<experiment>/runs.csv` (with a `run` column), so the
/// report keeps the raw numbers behind its figures.
pub fn report_into(dir: &Path, out: &Path) -> Result<ReportSummary, ReportError> {
    let folders = input::find_experiments(dir)?;
    if folders.is_empty() {
        return Err(ReportError::NoExperiments {
            dir: dir.to_path_buf(),
        });
    }
    let mut summary = ReportSummary::default();
    let mut sections = Vec::new();
    for folder in &folders {
        let section = if let Ok(schema::AnyExperimentRecord::E5(_)) =
            schema::AnyExperimentRecord::read(folder)
        {
            e5_experiment(folder, out, &mut summary)?
        } else {
            full_batch_experiment(folder, out, &mut summary)?
        };
        sections.push(section);
    }
    let ablation_paragraph = ablation_report(&folders, out, &mut summary)?;
    merge_worked_example(dir, out, &mut summary)?;
    let stability_found = stability_report(dir, out, &mut summary)?;
    let count = |st: claims::Status| summary.claims.iter().filter(|c| c.status == st).count();
    summary.claims_passed = count(claims::Status::Pass);
    summary.claims_no_data = count(claims::Status::NoData);
    summary.claims_too_few_runs = count(claims::Status::TooFewRuns);
    summary.claims_failed = count(claims::Status::Fail);

    write_claims_and_report(
        out,
        &sections,
        ablation_paragraph,
        stability_found,
        &mut summary,
    )?;
    Ok(summary)
}

/// The report of one E5 experiment folder (written by [`e5::report`]).
fn e5_experiment(
    folder: &Path,
    out: &Path,
    summary: &mut ReportSummary,
) -> Result<ExperimentReport, ReportError> {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let r = e5::report(folder, &out.join(&name), &mut summary.files_written)?;
    summary.experiments.push(r.id.clone());
    summary.claims.extend(r.claims);
    Ok(ExperimentReport {
        id: r.id,
        folder: name,
        title: Some(r.title),
        runs: r.runs,
        files: r.files,
        figures: r.figures,
    })
}

/// The report of one full-batch experiment folder (E1-E4, the ablations): its strategy
/// failures, and the files of [`full_batch_files`] when it holds runs.
fn full_batch_experiment(
    folder: &Path,
    out: &Path,
    summary: &mut ReportSummary,
) -> Result<ExperimentReport, ReportError> {
    let exp = input::load_experiment(folder)?;
    for run in &exp.runs {
        for f in &run.failed {
            summary.run_failures.push(format!(
                "{} {}: strategy `{}` failed at epoch {}: {}",
                exp.id,
                schema::run_dir_name(run.index),
                f.strategy,
                f.epoch,
                f.error
            ));
        }
    }
    let mut section = ExperimentReport {
        id: exp.id.clone(),
        folder: folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        title: exp.meta.title.clone(),
        runs: exp.runs.len(),
        files: Vec::new(),
        figures: Vec::new(),
    };
    summary.experiments.push(exp.id.clone());
    let folder = &out.join(&section.folder);
    std::fs::create_dir_all(folder).map_err(|source| ReportError::Io {
        path: folder.clone(),
        source,
    })?;
    if !exp.runs.is_empty() {
        full_batch_files(&exp, folder, &mut section, summary)?;
    }
    Ok(section)
}

/// The files of a full-batch experiment with runs, in its report `folder`: `runs.csv`,
/// `summary.csv`, `table.md`, the figures, and its claims.
fn full_batch_files(
    exp: &input::Experiment,
    folder: &Path,
    section: &mut ExperimentReport,
    summary: &mut ReportSummary,
) -> Result<(), ReportError> {
    let rows = aggregate::summarise(exp);
    let written = &mut summary.files_written;
    write_file(
        &folder.join(crate::schema::outputs::RUNS_CSV),
        &runs_csv(exp)?,
        written,
    )?;
    section.files.push((
        "every run's metrics".into(),
        crate::schema::outputs::RUNS_CSV.into(),
    ));
    write_file(
        &folder.join(crate::schema::outputs::SUMMARY_CSV),
        &aggregate::summary_csv(&rows),
        written,
    )?;
    write_file(
        &folder.join(crate::schema::outputs::TABLE_MD),
        &table::table_markdown(exp, &rows),
        written,
    )?;
    section
        .files
        .push(("table".into(), crate::schema::outputs::TABLE_MD.into()));
    section.files.push((
        "summary CSV".into(),
        crate::schema::outputs::SUMMARY_CSV.into(),
    ));

    let path = folder.join(crate::schema::outputs::FIGURE_SVG);
    let svg = figure::main_figure(exp, &rows).map_err(|e| e.at(path.clone()))?;
    write_file(&path, &svg, written)?;
    section
        .figures
        .push(crate::schema::outputs::FIGURE_SVG.into());

    let path = folder.join(crate::schema::outputs::REFERENCE_SVG);
    let svg = figure::reference_figure(exp, &rows).map_err(|e| e.at(path.clone()))?;
    if let Some(svg) = svg {
        write_file(&path, &svg, written)?;
        section
            .figures
            .push(crate::schema::outputs::REFERENCE_SVG.into());
    }
    let path = folder.join(crate::schema::outputs::EQUIVARIANCE_SVG);
    let svg = figure::equivariance_figure(exp).map_err(|e| e.at(path.clone()))?;
    if let Some(svg) = svg {
        write_file(&path, &svg, written)?;
        section
            .figures
            .push(crate::schema::outputs::EQUIVARIANCE_SVG.into());
    }
    summary.claims.extend(claims::check(exp));
    if let Some(reg) = regularised::summarise(exp) {
        let path = folder.join(crate::schema::outputs::REGULARISED_SVG);
        let svg = regularised::figure(exp, &reg).map_err(|e| e.at(path.clone()))?;
        write_file(&path, &svg, written)?;
        section
            .figures
            .push(crate::schema::outputs::REGULARISED_SVG.into());
        summary.claims.extend(regularised::claims(exp, &reg));
    }
    Ok(())
}

/// The norm ablation over the experiment folders named as its members (`ablation-norm.md`
/// and its claims); returns the paragraph for `report.md`.
fn ablation_report(
    folders: &[PathBuf],
    out: &Path,
    summary: &mut ReportSummary,
) -> Result<Option<String>, ReportError> {
    let ablation: Vec<input::Experiment> = folders
        .iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| ablation::ablation_key(n).is_some())
        })
        .map(|f| input::load_experiment(f))
        .collect::<Result<_, _>>()?;
    let ablation = ablation::group(&ablation);
    let ablation_claims = ablation::claims(&ablation);
    if let Some(md) = ablation::ablation_markdown(&ablation, &ablation_claims) {
        write_file(
            &out.join(crate::schema::outputs::ABLATION_NORM_MD),
            &md,
            &mut summary.files_written,
        )?;
    }
    let ablation_paragraph = ablation::ablation_summary(&ablation, &ablation_claims);
    summary.claims.extend(ablation_claims);
    Ok(ablation_paragraph)
}

/// Merges the claims of `worked_example.json` (in `out`, else in `dir`), if there is one.
fn merge_worked_example(
    dir: &Path,
    out: &Path,
    summary: &mut ReportSummary,
) -> Result<(), ReportError> {
    let worked = [out, dir]
        .iter()
        .map(|d| d.join(crate::schema::outputs::WORKED_EXAMPLE_JSON))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join(crate::schema::outputs::WORKED_EXAMPLE_JSON));
    if worked.is_file() {
        let mut extra: Vec<Claim> = schema::read_json(&worked)?;
        for c in &mut extra {
            c.normalise_status();
        }
        summary.claims.extend(extra);
    }
    Ok(())
}

/// The stability section of `eqaug stability`'s analyses under `dir/stability`; whether
/// there is one to link from `report.md`.
fn stability_report(
    dir: &Path,
    out: &Path,
    summary: &mut ReportSummary,
) -> Result<bool, ReportError> {
    // The stability analyses of `eqaug stability` (docs/science.md §10), when DIR/stability holds any.
    let stability_dir = dir.join("stability");
    let mut stability_found = false;
    if stability_dir.is_dir() {
        let c = stability::write(
            &stability_dir,
            &out.join("stability"),
            &mut summary.files_written,
        )?;
        stability_found = !c.is_empty() || out.join("stability/stability.md").is_file();
        summary.claims.extend(c);
    }
    Ok(stability_found)
}

/// Writes `claims.json`, `claims.md` and `report.md`.
fn write_claims_and_report(
    out: &Path,
    sections: &[ExperimentReport],
    ablation_paragraph: Option<String>,
    stability_found: bool,
    summary: &mut ReportSummary,
) -> Result<(), ReportError> {
    let json =
        serde_json::to_string_pretty(&summary.claims).map_err(|source| SchemaError::Json {
            path: out.join(crate::schema::outputs::CLAIMS_JSON),
            source,
        })?;
    write_file(
        &out.join(crate::schema::outputs::CLAIMS_JSON),
        &(json + "\n"),
        &mut summary.files_written,
    )?;
    write_file(
        &out.join(crate::schema::outputs::CLAIMS_MD),
        &claims::claims_markdown(&summary.claims),
        &mut summary.files_written,
    )?;
    let mut md = report_markdown(sections, summary);
    if let Some(p) = ablation_paragraph {
        md.push_str(&p);
    }
    if stability_found {
        md.push_str(
            "## Stability of the stationary points (docs/science.md §10)\n\n\
                 Hessian spectra on E and E-perp at stationary points in E, and predicted against \
                 measured escape: [stability/stability.md](stability/stability.md).\n\n\
                 ![stability densities](stability/stability.svg)\n",
        );
    }
    write_file(
        &out.join(crate::schema::outputs::REPORT_MD),
        &md,
        &mut summary.files_written,
    )?;
    Ok(())
}

/// Every run's `metrics.csv` in one table, with the run index as the first column.
fn runs_csv(exp: &input::Experiment) -> Result<String, ReportError> {
    let mut out = String::new();
    for run in &exp.runs {
        let path = run.dir.join(schema::METRICS_CSV);
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if out.is_empty() {
            let _ = writeln!(out, "run,{header}");
        }
        for l in lines.filter(|l| !l.is_empty()) {
            let _ = writeln!(out, "{},{l}", run.index);
        }
    }
    Ok(out)
}

/// `report.md`: per experiment, relative links to its table and CSV and the figures inline.
fn report_markdown(sections: &[ExperimentReport], summary: &ReportSummary) -> String {
    let mut out = String::from("# eqaug report\n\n");
    out.push_str(&findings::what_we_found(&summary.claims));
    out.push_str("## Experiments\n\n");
    if !summary.run_failures.is_empty() {
        let _ = writeln!(
            out,
            "**{} strategy run(s) FAILED** (diverged; left out of the claims and of the \
             medians after the failure):\n",
            summary.run_failures.len()
        );
        for f in &summary.run_failures {
            let _ = writeln!(out, "- {f}");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Claims: {}: see [claims.md](claims.md) ([claims.json](claims.json)).\n",
        claims::status_counts(&summary.claims)
    );
    for s in sections {
        let _ = writeln!(
            out,
            "### {}{}\n",
            s.id,
            s.title
                .as_deref()
                .map(|t| format!(": {t}"))
                .unwrap_or_default()
        );
        if s.runs == 0 {
            let _ = writeln!(out, "No finished runs yet in `{}/`.\n", s.folder);
            continue;
        }
        let links: Vec<String> = s
            .files
            .iter()
            .map(|(label, file)| (label.as_str(), file.as_str()))
            .chain(s.figures.iter().map(|f| (f.as_str(), f.as_str())))
            .map(|(label, file)| format!("[{label}]({}/{file})", s.folder))
            .collect();
        let _ = writeln!(out, "{}. {}\n", runs_text(s.runs), links.join(", "));
        let mine: Vec<Claim> = summary
            .claims
            .iter()
            .filter(|c| c.experiment == s.id)
            .cloned()
            .collect();
        let not_passing: Vec<String> = mine
            .iter()
            .filter(|c| !c.pass)
            .map(|c| format!("`{}` ({})", c.id, c.status.label().trim_matches('*')))
            .collect();
        let _ = writeln!(
            out,
            "Claims: {}{}.\n",
            claims::status_counts(&mine),
            if not_passing.is_empty() {
                String::new()
            } else {
                format!("; not passing: {}", not_passing.join(", "))
            }
        );
        for f in &s.figures {
            let _ = writeln!(out, "![{} {f}]({}/{f})\n", s.id, s.folder);
        }
    }
    out
}
