//! The report of E5 (docs/science.md §4, §5 (claim 4) and §9): reads the E5 run outputs (see
//! [`crate::schema::e5`]) and writes, in the experiment's report folder:
//!
//! * `figure.svg`: the paper's figure, the distance to E ∩ L per phase-2 epoch (log scale),
//!   the median per case with one thin line per run (up to 3 runs) or the interquartile band
//!   over runs (more runs); right panel: the same distance as a
//!   ratio to the distance moved in phase 2;
//! * `steps.svg`: the same per SGD step during the first augmented epoch;
//! * `table.md`: medians with their order-statistic intervals per case at chosen epochs, the phase-1 models, the
//!   one-step probe (closed vs shuffled batch), the per-layer distances;
//! * `runs.csv` (every epoch row of every run and model) and `summary.csv` (quartiles);
//! * the checks of claim 4 (docs/science.md §5), returned to the caller for `claims.json` / `claims.md`.

use super::aggregate::{quantile, Quartiles};
use super::claims::{ratio, Bound, Claim};
use super::error::ReportError;
use super::figure::{
    de, draw_line, layout, panel_builder, Dash, DrawResult, FigureError, StrategyCurves,
};
use super::table::sci;
use crate::config::e5::{Parametrisation, Support};
use crate::config::Precision;
use crate::schema::e5::{
    self as schema, CaseJson, CaseMeta, EpochRow, ExperimentJson, Phase1Json, StepRow,
};
use crate::schema::outputs::{FIGURE_SVG, RUNS_CSV, STEPS_SVG, SUMMARY_CSV, TABLE_MD};
use crate::schema::RunRecord;
use crate::schema::SchemaError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn schema_err(e: SchemaError) -> ReportError {
    ReportError::Schema(e)
}

/// Phase-2 results of one case in one run.
#[derive(Debug, Clone)]
pub struct CaseData {
    /// `case.json`.
    pub info: CaseJson,
    /// `epochs.csv` (phase 2, epoch 0 = the loaded start).
    pub epochs: Vec<EpochRow>,
    /// The rows of `steps.csv` up to the end of the first epoch (step 0 included).
    pub first_epoch_steps: Vec<StepRow>,
    /// Steps recorded.
    pub steps: usize,
    /// sum over steps of `kick^2` (squared norm of the part of each step off E ∩ L).
    pub sum_kick_sq: f64,
    /// sum over steps of `kick`.
    pub sum_kick: f64,
    /// Distance to E ∩ L after the last recorded step.
    pub final_dist_to_e: f64,
    /// Distance from the phase-2 start after the last recorded step.
    pub final_dist_from_start: f64,
}

/// One phase-1 model of a run.
#[derive(Debug, Clone)]
pub struct Phase1Data {
    /// `phase1.json`.
    pub info: Phase1Json,
    /// `epochs.csv` (phase 1).
    pub epochs: Vec<EpochRow>,
}

/// One finished E5 run.
#[derive(Debug, Clone)]
pub struct E5Run {
    /// `run.json`.
    pub info: RunRecord,
    /// The run's folder.
    pub dir: PathBuf,
    /// Phase-2 results per case name.
    pub cases: BTreeMap<String, CaseData>,
    /// Phase-1 models per support.
    pub phase1: BTreeMap<Support, Phase1Data>,
}

/// An E5 experiment folder, read.
#[derive(Debug, Clone)]
pub struct E5Results {
    /// Experiment id.
    pub id: String,
    /// `experiment.json`.
    pub meta: ExperimentJson,
    /// Finished runs (those with a `run.json`), by index.
    pub runs: Vec<E5Run>,
}

impl E5Results {
    /// The values of `f` over the runs that have case `case`.
    fn per_run(&self, case: &str, f: impl Fn(&CaseData) -> f64) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.cases.get(case))
            .map(f)
            .collect()
    }

    /// The one-step probes of case `case`, over the runs that made one.
    fn probes(&self, case: &str) -> Vec<schema::ProbeJson> {
        self.runs
            .iter()
            .filter_map(|r| r.cases.get(case))
            .filter_map(|c| c.info.probe)
            .collect()
    }

    /// The first case with this support and parametrisation.
    fn find_case(&self, support: Support, p: Parametrisation) -> Option<&CaseMeta> {
        self.meta
            .cases
            .iter()
            .find(|c| c.support == support && c.parametrisation == p)
    }

    fn precision(&self) -> Precision {
        if self.meta.precision == "f64" {
            Precision::F64
        } else {
            Precision::F32
        }
    }
}

fn read_case(dir: &Path) -> Result<CaseData, ReportError> {
    let info: CaseJson = schema::read_json(&dir.join(schema::CASE_JSON)).map_err(schema_err)?;
    let epochs = read_optional(&dir.join(schema::EPOCHS_CSV))?;
    let steps: Vec<StepRow> = read_optional(&dir.join(schema::STEPS_CSV))?;
    let first_epoch_steps = steps.iter().take_while(|s| s.epoch <= 1).cloned().collect();
    let (mut sum_kick_sq, mut sum_kick) = (0.0, 0.0);
    for s in steps.iter().filter(|s| s.step > 0) {
        sum_kick_sq += s.kick * s.kick;
        sum_kick += s.kick;
    }
    let last = steps.last();
    Ok(CaseData {
        info,
        epochs,
        first_epoch_steps,
        steps: steps.len().saturating_sub(1),
        sum_kick_sq,
        sum_kick,
        final_dist_to_e: last.map_or(f64::NAN, |s| s.dist_to_e),
        final_dist_from_start: last.map_or(f64::NAN, |s| s.dist_from_start),
    })
}

fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, ReportError> {
    if path.is_file() {
        schema::read_csv(path).map_err(schema_err)
    } else {
        Ok(Vec::new())
    }
}

/// Reads an E5 experiment folder: `experiment.json` and every finished run.
pub fn load(folder: &Path) -> Result<E5Results, ReportError> {
    let meta: ExperimentJson =
        schema::read_json(&folder.join(schema::EXPERIMENT_JSON)).map_err(schema_err)?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|source| ReportError::Io {
            path: folder.into(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-") && !n.contains(".tmp"))
                && p.join(schema::RUN_JSON).is_file()
        })
        .collect();
    dirs.sort();
    let mut runs = Vec::new();
    for dir in dirs {
        let info = RunRecord::read(&dir).map_err(schema_err)?;
        let mut cases = BTreeMap::new();
        let mut phase1 = BTreeMap::new();
        for c in &meta.cases {
            let cdir = schema::case_dir(&dir, &c.name);
            if cdir.join(schema::CASE_JSON).is_file() {
                cases.insert(c.name.clone(), read_case(&cdir)?);
            }
            let pdir = schema::phase1_dir(&dir, &c.support);
            if !phase1.contains_key(&c.support) && pdir.join(schema::PHASE1_JSON).is_file() {
                let info: Phase1Json =
                    schema::read_json(&pdir.join(schema::PHASE1_JSON)).map_err(schema_err)?;
                let epochs = read_optional(&pdir.join(schema::EPOCHS_CSV))?;
                phase1.insert(c.support.clone(), Phase1Data { info, epochs });
            }
        }
        runs.push(E5Run {
            info,
            dir,
            cases,
            phase1,
        });
    }
    Ok(E5Results {
        id: meta.experiment.clone(),
        meta,
        runs,
    })
}

/// What the E5 report wrote, for `report.md` and the claims.
#[derive(Debug, Clone)]
pub struct E5Report {
    /// Experiment id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Finished runs.
    pub runs: usize,
    /// `(label, file)` of the tables and CSVs.
    pub files: Vec<(String, String)>,
    /// The figures.
    pub figures: Vec<String>,
    /// The checks of claim 4 (docs/science.md §5).
    pub claims: Vec<Claim>,
}

/// Reads an E5 experiment folder and writes its report into `out` (created if needed).
pub fn report(
    folder: &Path,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<E5Report, ReportError> {
    let res = load(folder)?;
    std::fs::create_dir_all(out).map_err(|source| ReportError::Io {
        path: out.into(),
        source,
    })?;
    let mut rep = E5Report {
        id: res.id.clone(),
        title: res.meta.title.clone(),
        runs: res.runs.len(),
        files: Vec::new(),
        figures: Vec::new(),
        claims: Vec::new(),
    };
    if res.runs.is_empty() {
        return Ok(rep);
    }
    let claims = check_claims(&res);
    let mut write = |name: &str, text: &str| -> Result<(), ReportError> {
        let path = out.join(name);
        crate::io::write_atomic(&path, text.as_bytes())?;
        written.push(path);
        Ok(())
    };
    write(RUNS_CSV, &runs_csv(&res))?;
    write(SUMMARY_CSV, &summary_csv(&res))?;
    write(TABLE_MD, &table_markdown(&res, &claims))?;
    rep.files.push(("table".into(), TABLE_MD.into()));
    rep.files.push(("summary CSV".into(), SUMMARY_CSV.into()));
    rep.files
        .push(("every run's epochs".into(), RUNS_CSV.into()));
    for (name, svg) in [
        (FIGURE_SVG, epoch_figure(&res)),
        (STEPS_SVG, steps_figure(&res)),
    ] {
        let svg = svg.map_err(|e| e.at(out.join(name)))?;
        write(name, &svg)?;
        rep.figures.push(name.into());
    }
    rep.claims = claims;
    Ok(rep)
}

// ---------------------------------------------------------------------------------------
// CSV

fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-3..1e6).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A column of `epochs.csv`: its name and value.
type Column = (&'static str, fn(&EpochRow) -> f64);

const EPOCH_COLUMNS: [Column; 10] = [
    ("train_loss", |r| r.train_loss),
    ("train_accuracy", |r| r.train_accuracy),
    ("test_loss", |r| r.test_loss),
    ("test_accuracy", |r| r.test_accuracy),
    ("dist_to_e", |r| r.dist_to_e),
    ("dist_from_start", |r| r.dist_from_start),
    ("dist_to_e.conv1", |r| r.dist_to_e_conv1),
    ("dist_to_e.conv2", |r| r.dist_to_e_conv2),
    ("dist_to_e.conv3", |r| r.dist_to_e_conv3),
    ("dist_to_e.linear", |r| r.dist_to_e_linear),
];

/// The models of the report: phase-1 models per support, then the cases.
/// A model of the report and how to find its epoch rows in a run.
type Model<'a> = (String, Box<dyn Fn(&E5Run) -> Option<&[EpochRow]> + 'a>);

fn models(res: &E5Results) -> Vec<Model<'_>> {
    let mut out: Vec<Model<'_>> = Vec::new();
    let mut supports: Vec<Support> = res.meta.cases.iter().map(|c| c.support.clone()).collect();
    supports.sort();
    supports.dedup();
    for s in supports {
        out.push((
            format!("phase1-{s}"),
            Box::new(move |r: &E5Run| r.phase1.get(&s).map(|p| p.epochs.as_slice())),
        ));
    }
    for c in &res.meta.cases {
        let name = c.name.clone();
        out.push((
            c.name.clone(),
            Box::new(move |r: &E5Run| r.cases.get(&name).map(|p| p.epochs.as_slice())),
        ));
    }
    out
}

/// Every epoch row of every run and model: `run,model,phase,epoch,...`.
fn runs_csv(res: &E5Results) -> String {
    let mut s = String::from("run,model,phase,epoch");
    for (c, _) in EPOCH_COLUMNS {
        s.push(',');
        s.push_str(c);
    }
    s.push('\n');
    let models = models(res);
    for run in &res.runs {
        for (name, get) in &models {
            for r in get(run).unwrap_or(&[]) {
                let _ = write!(
                    s,
                    "{},{name},{},{}",
                    run.info.run.unwrap_or_default(),
                    r.phase,
                    r.epoch
                );
                for (_, f) in EPOCH_COLUMNS {
                    let _ = write!(s, ",{}", num(f(r)));
                }
                s.push('\n');
            }
        }
    }
    s
}

/// Quartiles over runs per model, phase and epoch: `model,phase,epoch,runs,` then
/// `<q>_median,<q>_q25,<q>_q75` per quantity, plus the ratio dist_to_e / dist_from_start.
fn summary_csv(res: &E5Results) -> String {
    let mut s = String::from("model,phase,epoch,runs");
    let names: Vec<&str> = EPOCH_COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .chain(["dist_to_e_ratio"])
        .collect();
    for c in &names {
        let _ = write!(s, ",{c}_median,{c}_q25,{c}_q75");
    }
    s.push('\n');
    for (name, get) in models(res) {
        let mut epochs: Vec<(u8, usize)> = res
            .runs
            .iter()
            .filter_map(&get)
            .flat_map(|rows| rows.iter().map(|r| (r.phase, r.epoch)))
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        for (phase, epoch) in epochs {
            let rows: Vec<&EpochRow> = res
                .runs
                .iter()
                .filter_map(&get)
                .filter_map(|rows| rows.iter().find(|r| r.epoch == epoch && r.phase == phase))
                .collect();
            let _ = write!(s, "{name},{phase},{epoch},{}", rows.len());
            let mut cols: Vec<Vec<f64>> = EPOCH_COLUMNS
                .iter()
                .map(|(_, f)| rows.iter().map(|r| f(r)).collect())
                .collect();
            cols.push(
                rows.iter()
                    .map(|r| ratio(r.dist_to_e, r.dist_from_start))
                    .collect(),
            );
            for v in cols {
                let q = Quartiles::of(&v);
                let _ = write!(s, ",{},{},{}", num(q.median), num(q.q25), num(q.q75));
            }
            s.push('\n');
        }
    }
    s
}

fn med(v: &[f64]) -> f64 {
    quantile(v, 0.5).unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------
// Claims (docs/science.md §5, claim 4)

/// The unit round-off u of a precision: |fl(x) - x| <= u |x|.
fn unit_round_off(p: Precision) -> f64 {
    match p {
        Precision::F32 => f64::from(f32::EPSILON) / 2.0,
        Precision::F64 => f64::EPSILON / 2.0,
    }
}

/// Allowed round-off distance after one step on a closed batch, in units of u ||A'||:
/// storing A' in floating point moves it by at most u ||A'|| (and the projection onto
/// E⊥ is a contraction), plus as much again for the round-off of the computed gradient.
const ROUND_OFF_UNITS: f64 = 2.0;

/// Factor over the random-walk level allowed for the cross model (Chebyshev: a sum of
/// uncorrelated zero-mean kicks exceeds 3 x its root-mean-square size with probability at
/// most 1/9).
const RANDOM_WALK_FACTOR: f64 = 3.0;

/// How much farther from E ∩ L than cross the other cases must end (docs/science.md §5, claim 4, issue 13).
const LEAVE_FACTOR: f64 = 10.0;

/// A claim on per-run values, summarised by their median with its order-statistic interval
/// (docs/science.md §5).
fn claim(
    id: &str,
    exp: &str,
    statement: String,
    per_run: &[f64],
    bound: Bound,
    note: String,
) -> Claim {
    Claim::measured(
        id,
        exp,
        statement,
        med(per_run),
        bound,
        super::interval::Evidence::median_of(per_run),
        Some(note),
    )
}

/// The checks of claim 4 (docs/science.md §5) that the cases present allow.
pub fn check_claims(res: &E5Results) -> Vec<Claim> {
    let mut out = Vec::new();
    let id = &res.id;
    let ok_runs = |case: &str| -> Vec<&CaseData> {
        res.runs
            .iter()
            .filter_map(|r| r.cases.get(case))
            .filter(|c| c.info.failure.is_none() && c.steps > 0)
            .collect()
    };
    let Some(cross) = res.find_case(Support::Cross, Parametrisation::Unitary) else {
        return out;
    };
    let cross_runs = ok_runs(&cross.name);
    let total = res.runs.len();
    let cross_final: Vec<f64> = cross_runs.iter().map(|c| c.final_dist_to_e).collect();
    let cross_med = med(&cross_final);

    // 1. Cross stays near E: its final distance against the random-walk level of its own
    // per-step kicks off E ∩ L.
    let rw: Vec<f64> = cross_runs.iter().map(|c| c.sum_kick_sq.sqrt()).collect();
    let straight: Vec<f64> = cross_runs.iter().map(|c| c.sum_kick).collect();
    let per_run: Vec<f64> = cross_runs
        .iter()
        .map(|c| ratio(c.final_dist_to_e, c.sum_kick_sq.sqrt()))
        .collect();
    let steps = cross_runs.first().map_or(0, |c| c.steps);
    out.push(claim(
        "e5-cross-near-E",
        id,
        format!(
            "The compatible, unitary model (`{}`) stays near E ∩ L: its distance to E ∩ L \
             after phase 2 (median {}) is at the level of the noise of its shuffled \
             mini-batches, which are not closed under C_4. Each of its {steps} steps moves it \
             off E ∩ L by a kick k_i (the part of the step orthogonal to E ∩ L); for \
             uncorrelated zero-mean kicks the distance is about sqrt(sum k_i^2) (median {}), \
             whereas kicks that all pushed the same way would add up to sum k_i (median {}). \
             Measured: distance / sqrt(sum k_i^2) per run, median over runs; bound: {} x the \
             random-walk level (Chebyshev, probability of exceeding it at most 1/9).",
            cross.name,
            sci(cross_med),
            sci(med(&rw)),
            sci(med(&straight)),
            RANDOM_WALK_FACTOR
        ),
        &per_run,
        Bound::AtMost(RANDOM_WALK_FACTOR),
        format!(
            "median over {} of {}",
            per_run.len(),
            super::runs_text(total)
        ),
    ));

    // 2. and 3. Skew and non-unitary leave E: at least 10 x farther than cross.
    for (case, id_suffix, why) in [
        (
            res.find_case(Support::Skew, Parametrisation::Unitary),
            "skew-leaves-E",
            "not compatible: Pi_E does not map L_skew into itself",
        ),
        (
            res.find_case(Support::Cross, Parametrisation::NonUnitary),
            "nonunitary-leaves-E",
            "compatible but not unitary: the basis on Omega is not orthonormal",
        ),
    ] {
        let Some(case) = case else { continue };
        let runs = ok_runs(&case.name);
        let fin: Vec<f64> = runs.iter().map(|c| c.final_dist_to_e).collect();
        let m = med(&fin);
        // Paired per run: both cases of a run share its seed and data.
        let paired: Vec<f64> = res
            .runs
            .iter()
            .filter_map(|r| {
                let ok = |c: &CaseData| c.info.failure.is_none() && c.steps > 0;
                let a = r.cases.get(&case.name).filter(|c| ok(c))?;
                let b = r.cases.get(&cross.name).filter(|c| ok(c))?;
                Some(ratio(a.final_dist_to_e, b.final_dist_to_e))
            })
            .collect();
        out.push(claim(
            &format!("e5-{id_suffix}"),
            id,
            format!(
                "`{}` ({why}) leaves E ∩ L: its distance to E ∩ L after phase 2 over that of \
                 `{}` in the same run, median over runs (medians of the distances: {} and {}).",
                case.name,
                cross.name,
                sci(m),
                sci(cross_med)
            ),
            &paired,
            Bound::AtLeast(LEAVE_FACTOR),
            format!(
                "median over {} of {} with both cases",
                paired.len(),
                super::runs_text(total)
            ),
        ));
    }

    // 4. One step on a batch closed under C_4 keeps cross in E ∩ L to round-off.
    let probes: Vec<_> = cross_runs.iter().filter_map(|c| c.info.probe).collect();
    if !probes.is_empty() {
        let u = unit_round_off(res.precision());
        let closed: Vec<f64> = probes
            .iter()
            .map(|p| ratio(p.closed.dist_to_e, u * p.closed.norm_after))
            .collect();
        let closed_abs: Vec<f64> = probes.iter().map(|p| p.closed.dist_to_e).collect();
        let shuffled_abs: Vec<f64> = probes.iter().map(|p| p.shuffled.dist_to_e).collect();
        let shuffled: Vec<f64> = probes
            .iter()
            .map(|p| ratio(p.shuffled.dist_to_e, p.shuffled.dist_moved))
            .collect();
        out.push(claim(
            "e5-cross-closed-batch-in-E",
            id,
            format!(
                "Corollary 1 per step: one SGD step of `{}` from the loaded equivariant \
                 weights on {} digits and their four rotations (a batch closed under C_4) \
                 stays in E ∩ L to {} round-off. Measured: distance to E ∩ L after the step \
                 (median {}) in units of u ||A'|| (u = {:.1e} the unit round-off, ||A'|| the \
                 weights' norm), median over runs; bound: {} units (storing A' moves it by at \
                 most u ||A'||, as much again for the computed gradient). The same step on a \
                 shuffled batch of the augmented set (not closed under C_4) puts it at {} \
                 ({} of the distance moved): that is what makes `{}` drift in phase 2.",
                cross.name,
                probes[0].digits,
                res.meta.precision,
                sci(med(&closed_abs)),
                u,
                ROUND_OFF_UNITS,
                sci(med(&shuffled_abs)),
                sci(med(&shuffled)),
                cross.name,
            ),
            &closed,
            Bound::AtMost(ROUND_OFF_UNITS),
            format!(
                "median over {} of {}",
                probes.len(),
                super::runs_text(total)
            ),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Table

/// `median [lo, hi]` with the order-statistic interval of the median (the median alone with
/// too few runs for one).
fn cell(v: &[f64]) -> String {
    if v.iter().all(|x| !x.is_finite()) {
        return "–".into();
    }
    let q = Quartiles::of(v);
    match q.ci {
        Some(ci) if ci.lo != ci.hi => {
            format!("{} [{}, {}]", sci(q.median), sci(ci.lo), sci(ci.hi))
        }
        _ => sci(q.median),
    }
}

fn pct_cell(v: &[f64]) -> String {
    if v.iter().all(|x| !x.is_finite()) {
        return "–".into();
    }
    let q = Quartiles::of(v);
    match q.ci {
        Some(ci) if ci.lo != ci.hi => format!(
            "{:.1}% [{:.1}, {:.1}]",
            100.0 * q.median,
            100.0 * ci.lo,
            100.0 * ci.hi
        ),
        _ => format!("{:.1}%", 100.0 * q.median),
    }
}

/// Phase-2 epochs shown in the table: 0, 1, the middle and the last.
fn table_epochs(last: usize) -> Vec<usize> {
    let mut e = vec![0, 1.min(last), last / 2, last];
    e.sort_unstable();
    e.dedup();
    e
}

fn table_markdown(res: &E5Results, claims: &[Claim]) -> String {
    let mut o = String::new();
    write_table_intro(&mut o, res);
    write_cross_probe(&mut o, res);
    write_probe_table(&mut o, res);
    write_phase2_per_epoch(&mut o, res);
    write_layer_distances(&mut o, res);
    write_phase1_models(&mut o, res);
    write_claims(&mut o, claims);
    write_failures(&mut o, res);
    o
}

/// `table.md`: the title, the profile and protocol, the cases.
fn write_table_intro(o: &mut String, res: &E5Results) {
    let m = &res.meta;
    let _ = writeln!(o, "# {}: {}\n", res.id, m.title);
    let _ = writeln!(
        o,
        "Profile `{}` ({}). {} finished runs of {} requested; precision {}; channels {:?}; \
         data: {} ({} training, {} test digits, standardised by mean 0.1307 and std 0.3081). \
         Phase 1: the equivariant model (kernels in E ∩ L_Omega, rot90-invariant final \
         layer), SGD learning rate {}, mini-batch {}, {} epochs. Phase 2: the model on Omega \
         loaded from it, SGD learning rate {}, mini-batch {}, {} epochs on the training set \
         and its three rotations, shuffled. Training time {:.1} s summed over runs.\n",
        m.profile,
        m.note,
        res.runs.len(),
        m.runs,
        m.precision,
        m.channels,
        m.data_source,
        m.train,
        m.test,
        m.phase1.learning_rate,
        m.phase1.minibatch,
        m.phase1.epochs,
        m.phase2.learning_rate,
        m.phase2.minibatch,
        m.phase2.epochs,
        m.wall_seconds,
    );
    let _ = writeln!(
        o,
        "Cases: {}. {}. Distances are \
         Frobenius norms in kernel space over the three convolutions and the final linear \
         layer; the distance to E ∩ L is `||K - Pi(K)||`, Pi the mean over the four \
         rotations of the kernel offsets followed by the mask of Omega.\n",
        m.cases
            .iter()
            .map(|c| format!(
                "`{}` (support {}, {})",
                c.name,
                c.support,
                c.parametrisation.name()
            ))
            .collect::<Vec<_>>()
            .join(", "),
        super::table::cells_sentence(res.runs.len())
    );
}

/// `table.md`: how shuffled mini-batches move the cross model (the one-step probe).
fn write_cross_probe(o: &mut String, res: &E5Results) {
    if let Some(cross) = res.find_case(Support::Cross, Parametrisation::Unitary) {
        let probes = res.probes(&cross.name);
        let _ = writeln!(o, "## How shuffled mini-batches move the cross model\n");
        if probes.is_empty() {
            let _ = writeln!(o, "No probe was made (`protocol.probe_digits = 0`).\n");
        } else {
            let closed: Vec<f64> = probes.iter().map(|p| p.closed.dist_to_e).collect();
            let shuffled: Vec<f64> = probes.iter().map(|p| p.shuffled.dist_to_e).collect();
            let moved: Vec<f64> = probes.iter().map(|p| p.shuffled.dist_moved).collect();
            let _ = writeln!(
                o,
                "Compatibility and unitarity make the augmented gradient of `{}` lie in E ∩ L \
                 only when it is averaged over whole C_4 orbits. One SGD step from the loaded \
                 equivariant weights on {} digits with their four rotations (closed under \
                 C_4) leaves it at distance {} from E ∩ L (round-off); the same step on {} \
                 shuffled samples of the augmented set (the mini-batches phase 2 uses, not \
                 closed under C_4) puts it at {} for a step of length {}. Every phase-2 step \
                 adds such a kick; the claim `e5-cross-near-E` checks that over phase 2 they \
                 add up no faster than uncorrelated noise (the square root of the sum of \
                 their squares) rather than as a drift. Within an epoch every rotation of \
                 every digit is visited once, so the kicks largely cancel by the epoch's end \
                 (see `steps.svg`: the distance of `{}` falls back at the end of the first \
                 epoch).\n",
                cross.name,
                probes[0].digits,
                cell(&closed),
                4 * probes[0].digits,
                cell(&shuffled),
                cell(&moved),
                cross.name,
            );
        }
    }
}

/// `table.md`: one SGD step from the loaded start, closed vs shuffled batch, all cases.
fn write_probe_table(o: &mut String, res: &E5Results) {
    let m = &res.meta;
    let _ = writeln!(o, "## One SGD step from the loaded start (all cases)\n");
    let _ = writeln!(
        o,
        "| case | start distance | closed batch: distance | / moved | shuffled batch: distance | / moved |\n|---|---|---|---|---|---|"
    );
    for c in &m.cases {
        let p = res.probes(&c.name);
        if p.is_empty() {
            continue;
        }
        let g = |f: fn(&schema::ProbeJson) -> f64| p.iter().map(f).collect::<Vec<_>>();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            c.name,
            cell(&g(|p| p.start_dist_to_e)),
            cell(&g(|p| p.closed.dist_to_e)),
            cell(&g(|p| ratio(p.closed.dist_to_e, p.closed.dist_moved))),
            cell(&g(|p| p.shuffled.dist_to_e)),
            cell(&g(|p| ratio(p.shuffled.dist_to_e, p.shuffled.dist_moved))),
        );
    }
    o.push('\n');
}

/// `table.md`: the phase-2 quantities at the epochs of [`table_epochs`].
fn write_phase2_per_epoch(o: &mut String, res: &E5Results) {
    let m = &res.meta;
    let last = m.phase2.epochs;
    type Q = (&'static str, fn(&EpochRow) -> f64, bool);
    let quantities: [Q; 7] = [
        ("Distance to E ∩ L", |r| r.dist_to_e, false),
        (
            "Distance to E ∩ L / distance moved in phase 2",
            |r| ratio(r.dist_to_e, r.dist_from_start),
            false,
        ),
        ("Distance moved in phase 2", |r| r.dist_from_start, false),
        ("Training loss (augmented set)", |r| r.train_loss, false),
        (
            "Training accuracy (augmented set)",
            |r| r.train_accuracy,
            true,
        ),
        ("Test loss", |r| r.test_loss, false),
        ("Test accuracy", |r| r.test_accuracy, true),
    ];
    let _ = writeln!(o, "## Phase 2, per epoch\n");
    for (title, f, pct) in quantities {
        let _ = writeln!(o, "### {title}\n");
        let _ = writeln!(
            o,
            "| epoch | {} |\n|---:|{}",
            m.cases
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(m.cases.len())
        );
        for e in table_epochs(last) {
            let cells: Vec<String> = m
                .cases
                .iter()
                .map(|c| {
                    let v = res.per_run(&c.name, |d| {
                        d.epochs.iter().find(|r| r.epoch == e).map_or(f64::NAN, f)
                    });
                    let v: Vec<f64> = v.into_iter().filter(|x| !x.is_nan()).collect();
                    if pct {
                        pct_cell(&v)
                    } else {
                        cell(&v)
                    }
                })
                .collect();
            let _ = writeln!(o, "| {e} | {} |", cells.join(" | "));
        }
        o.push('\n');
    }
}

/// `table.md`: the distance to E ∩ L per layer after phase 2.
fn write_layer_distances(o: &mut String, res: &E5Results) {
    let m = &res.meta;
    let _ = writeln!(o, "## Distance to E ∩ L per layer after phase 2\n");
    let _ = writeln!(
        o,
        "| case | {} |\n|---|{}",
        schema::LAYERS.join(" | "),
        "---|".repeat(schema::LAYERS.len())
    );
    let layer_fns: [fn(&EpochRow) -> f64; 4] = [
        |r| r.dist_to_e_conv1,
        |r| r.dist_to_e_conv2,
        |r| r.dist_to_e_conv3,
        |r| r.dist_to_e_linear,
    ];
    for c in &m.cases {
        let cells: Vec<String> = layer_fns
            .iter()
            .map(|f| {
                let v: Vec<f64> = res
                    .per_run(&c.name, |d| d.epochs.last().map_or(f64::NAN, f))
                    .into_iter()
                    .filter(|x| !x.is_nan())
                    .collect();
                cell(&v)
            })
            .collect();
        let _ = writeln!(o, "| {} | {} |", c.name, cells.join(" | "));
    }
    o.push('\n');
}

/// `table.md`: the phase-1 (equivariant) models at their last epoch.
fn write_phase1_models(o: &mut String, res: &E5Results) {
    let m = &res.meta;
    let _ = writeln!(
        o,
        "## Phase 1: the equivariant models at their last epoch\n"
    );
    let _ = writeln!(
        o,
        "| model | dim(E ∩ L_Omega) per channel pair | parameters | train loss | train accuracy | test loss | test accuracy | distance to E ∩ L |\n|---|---|---|---|---|---|---|---|"
    );
    let mut supports: Vec<Support> = m.cases.iter().map(|c| c.support.clone()).collect();
    supports.sort();
    supports.dedup();
    for s in supports {
        let p1: Vec<&Phase1Data> = res.runs.iter().filter_map(|r| r.phase1.get(&s)).collect();
        let Some(first) = p1.first() else { continue };
        let g = |f: fn(&EpochRow) -> f64| -> Vec<f64> {
            p1.iter().filter_map(|p| p.epochs.last()).map(f).collect()
        };
        let _ = writeln!(
            o,
            "| phase1-{} | {} | {} | {} | {} | {} | {} | {} |",
            s,
            first.info.dim_per_channel_pair,
            first.info.parameters,
            cell(&g(|r| r.train_loss)),
            pct_cell(&g(|r| r.train_accuracy)),
            cell(&g(|r| r.test_loss)),
            pct_cell(&g(|r| r.test_accuracy)),
            cell(&g(|r| r.dist_to_e)),
        );
    }
    o.push('\n');
}

/// `table.md`: the claims, if any.
fn write_claims(o: &mut String, claims: &[Claim]) {
    if !claims.is_empty() {
        let _ = writeln!(o, "## Claims (docs/science.md §5, claim 4)\n");
        for c in claims {
            let _ = writeln!(
                o,
                "- **{}** `{}`: measured {}, {}, bound {}. {}",
                c.status.label().trim_matches('*'),
                c.id,
                sci(c.measured),
                c.evidence_text(),
                c.bound,
                c.statement
            );
        }
        o.push('\n');
    }
}

/// `table.md`: the runs that failed, if any.
fn write_failures(o: &mut String, res: &E5Results) {
    let failures: Vec<String> = res
        .runs
        .iter()
        .flat_map(|r| {
            let p1 = r.phase1.iter().filter_map(move |(s, p)| {
                p.info.failure.as_ref().map(|f| {
                    format!(
                        "- run {}: phase 1 ({}) failed in epoch {}: {}",
                        r.info.run.unwrap_or_default(),
                        s,
                        f.epoch,
                        f.error
                    )
                })
            });
            let p2 = r.cases.iter().filter_map(move |(n, c)| {
                c.info.failure.as_ref().map(|f| {
                    format!(
                        "- run {}: `{n}` failed in phase-2 epoch {}: {}",
                        r.info.run.unwrap_or_default(),
                        f.epoch,
                        f.error
                    )
                })
            });
            p1.chain(p2).collect::<Vec<_>>()
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(o, "## Failed runs\n\n{}\n", failures.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------
// Figures

const COLORS: [RGBColor; 6] = [
    RGBColor(0, 140, 60),
    RGBColor(215, 40, 40),
    RGBColor(30, 90, 220),
    RGBColor(150, 50, 170),
    RGBColor(230, 140, 0),
    RGBColor(60, 60, 60),
];

/// Style of a case: cross (the compatible unitary case) green solid, skew red dotted,
/// non-unitary blue dashed; others in further colours.
fn style(i: usize, c: &CaseMeta) -> (RGBColor, Dash) {
    match (&c.support, c.parametrisation) {
        (Support::Cross, Parametrisation::Unitary) => (COLORS[0], Dash::Solid),
        (Support::Skew, Parametrisation::Unitary) => (COLORS[1], Dash::Dotted),
        (Support::Cross, Parametrisation::NonUnitary) => (COLORS[2], Dash::Dashed),
        _ => (COLORS[3 + i % 3], Dash::Dashed),
    }
}

/// Median over runs at each x of the runs' points (only x where every run has a positive
/// finite value is kept, so the median is over the same runs everywhere).
fn median_line(runs: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let mut xs: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for &(x, y) in r {
            xs.entry(x.to_bits()).or_default().push(y);
        }
    }
    let mut out: Vec<(f64, f64)> = xs
        .into_iter()
        .filter(|(_, v)| v.len() == runs.len())
        .map(|(x, v)| (f64::from_bits(x), med(&v)))
        .filter(|(_, y)| y.is_finite() && *y > 0.0)
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The interquartile range over runs at each x of the runs' points, where every run has a
/// positive finite value (as [`median_line`]): `(x, q25, q75)`.
fn quartile_band(runs: &[Vec<(f64, f64)>]) -> Vec<(f64, f64, f64)> {
    let mut xs: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for &(x, y) in r {
            xs.entry(x.to_bits()).or_default().push(y);
        }
    }
    let mut out: Vec<(f64, f64, f64)> = xs
        .into_iter()
        .filter(|(_, v)| v.len() == runs.len() && v.iter().all(|y| y.is_finite() && *y > 0.0))
        .map(|(x, v)| {
            let q = Quartiles::of(&v);
            (f64::from_bits(x), q.q25, q.q75)
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Keeps at most `max` points of a band, evenly spaced (always the first and the last).
fn thin_band(points: Vec<(f64, f64, f64)>, max: usize) -> Vec<(f64, f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let n = points.len();
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

/// Keeps at most `max` points of a polyline, evenly spaced (always the first and the last).
fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let n = points.len();
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

fn positive(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points.filter(|(_, y)| y.is_finite() && *y > 0.0).collect()
}

fn case_curves(
    res: &E5Results,
    points: impl Fn(&CaseData) -> Vec<(f64, f64)>,
) -> Vec<StrategyCurves> {
    res.meta
        .cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (color, dash) = style(i, c);
            let runs: Vec<Vec<(f64, f64)>> = res
                .runs
                .iter()
                .filter_map(|r| r.cases.get(&c.name))
                .map(&points)
                .collect();
            let median = thin(median_line(&runs), 600);
            let band = thin_band(quartile_band(&runs), 600);
            StrategyCurves {
                label: format!(
                    "{} ({}, {})",
                    c.name,
                    match c.support {
                        Support::Cross => "compatible",
                        _ => "not compatible",
                    },
                    match c.parametrisation {
                        Parametrisation::NonUnitary => "not unitary",
                        _ => "unitary",
                    }
                ),
                color,
                dash,
                runs: runs.into_iter().map(|r| thin(r, 300)).collect(),
                median,
                band,
            }
        })
        .collect()
}

/// Decade range covering every positive y of the curves.
fn log_range(curves: &[StrategyCurves]) -> (f64, f64) {
    let ys = curves
        .iter()
        .flat_map(|c| c.runs.iter().flatten().chain(c.median.iter()))
        .map(|p| p.1)
        .filter(|y| y.is_finite() && *y > 0.0);
    let (lo, hi) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !lo.is_finite() || hi <= 0.0 {
        return (1e-10, 1.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo * 1.5 {
        hi = lo * 10.0;
    }
    // A hair beyond the decades, so that both end labels are drawn.
    (lo * 0.999, hi * 1.001)
}

fn x_range(curves: &[StrategyCurves]) -> (f64, f64) {
    let xs = curves
        .iter()
        .flat_map(|c| c.runs.iter().flatten())
        .map(|p| p.0)
        .filter(|x| x.is_finite());
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    if !lo.is_finite() || hi <= lo {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

fn sup_tick(v: f64) -> String {
    let e = v.log10().round() as i32;
    if (v / 10f64.powi(e) - 1.0).abs() < 1e-6 {
        format!("1e{e}")
    } else {
        format!("{v:.0e}")
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[StrategyCurves],
    integer_x: bool,
) -> DrawResult {
    let (x0, x1) = x_range(curves);
    let (y0, y1) = log_range(curves);
    let mut chart = panel_builder(area, caption)
        .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
        .map_err(de)?;
    let span = x1 - x0;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(if integer_x && span <= 12.0 {
            span as usize + 1
        } else {
            8
        })
        .x_label_formatter(&|v| {
            if integer_x || span >= 20.0 {
                format!("{}", v.round() as i64)
            } else {
                format!("{v:.1}")
            }
        })
        .y_label_formatter(&|v| sup_tick(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(de)?;
    let plot = chart.plotting_area();
    for c in curves {
        if super::figure::draws_bands(c.runs.len()) {
            super::figure::draw_band(plot, &c.band, c.color, (x0, x1), (y0, y1))?;
            continue;
        }
        for r in &c.runs {
            if r.len() > 1 {
                plot.draw(&PathElement::new(
                    r.clone(),
                    c.color.mix(0.3).stroke_width(1),
                ))
                .map_err(de)?;
            }
        }
    }
    for c in curves {
        if c.median.len() > 1 {
            draw_line(plot, c.median.clone(), c.color, c.dash, 3)?;
        } else if let Some(&p) = c.median.first() {
            plot.draw(&Circle::new(p, 4, c.color.filled()))
                .map_err(de)?;
        }
    }
    Ok(())
}

/// Size of the E5 figures in pixels.
const SIZE: (u32, u32) = (1400, 620);

/// One panel of a two-panel figure: caption, x and y axis descriptions, curves.
type Panel<'a> = (&'a str, &'a str, &'a str, &'a [StrategyCurves]);

fn two_panels(
    title: &str,
    left: Panel<'_>,
    right: Panel<'_>,
    runs: usize,
    integer_x: bool,
) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let (l, r) = layout(&root, title, left.3, runs)?;
        draw_panel(&l, left.0, left.1, left.2, left.3, integer_x)?;
        draw_panel(&r, right.0, right.1, right.2, right.3, integer_x)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

fn title(res: &E5Results, what: &str) -> String {
    format!(
        "{}: {what}  (profile {}, {})",
        res.id,
        res.meta.profile,
        super::runs_text(res.runs.len())
    )
}

/// `figure.svg`: distance to E ∩ L per phase-2 epoch (left) and its ratio to the distance
/// moved (right), log scale; zero distances (exactly in E ∩ L) cannot be drawn on a log
/// scale and are left out.
pub fn epoch_figure(res: &E5Results) -> Result<String, FigureError> {
    distance_figure(
        res,
        FIGURE_SVG,
        "distance to E ∩ L during augmented training (phase 2)",
        "phase-2 epoch",
        |c| {
            c.epochs
                .iter()
                .map(|r| (r.epoch as f64, r.dist_to_e, r.dist_from_start))
                .collect()
        },
    )
}

/// `steps.svg`: the same per SGD step during the first augmented epoch.
pub fn steps_figure(res: &E5Results) -> Result<String, FigureError> {
    distance_figure(
        res,
        STEPS_SVG,
        "distance to E ∩ L per SGD step, first augmented epoch",
        "phase-2 step",
        |c| {
            c.first_epoch_steps
                .iter()
                .map(|s| (s.step as f64, s.dist_to_e, s.dist_from_start))
                .collect()
        },
    )
}

/// The two panels of the figure `name`: the distance to E ∩ L (left) and its ratio to the
/// distance moved (right) against `x_desc`, from each case's `(x, dist_to_e,
/// dist_from_start)` points; log scale, so non-positive values are left out.
fn distance_figure(
    res: &E5Results,
    name: &str,
    what: &str,
    x_desc: &str,
    points: impl Fn(&CaseData) -> Vec<(f64, f64, f64)>,
) -> Result<String, FigureError> {
    let raw = case_curves(res, |c| {
        positive(points(c).into_iter().map(|(x, d, _)| (x, d)))
    });
    let rel = case_curves(res, |c| {
        positive(points(c).into_iter().map(|(x, d, s)| (x, ratio(d, s))))
    });
    two_panels(
        &title(res, what),
        (
            "distance to E ∩ L (exact zeros not drawn)",
            x_desc,
            "||A - Pi(A)||  (log scale)",
            &raw,
        ),
        (
            "relative to the distance moved in phase 2",
            x_desc,
            "||A - Pi(A)|| / ||A - A_start||",
            &rel,
        ),
        res.runs.len(),
        true,
    )
    .map_err(|m| FigureError::new(name, m))
}
