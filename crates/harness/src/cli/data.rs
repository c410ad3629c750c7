//! `eqaug data export | describe`.

use eqaug_data::export::{summarize, write_npy_dir};
use eqaug_data::{mnist, sbm, shapes, Dataset};
use std::path::PathBuf;

/// The data sets of the experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetName {
    /// Stochastic block model graphs, 10 x 10 adjacency matrices, label = connected (E1).
    Sbm,
    /// MNIST digits at 28 x 28, values in [0, 1] (E5 before standardisation).
    Mnist,
    /// MNIST digits resized to 14 x 14 with antialiasing, values in [0, 1] (E2, E4).
    Mnist14,
    /// Synthetic triangle/pentagon images with two masks (E3).
    Shapes,
}

/// Which data set and how to make it.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Number of samples (default: the paper's, 1000 graphs, 3000 shapes, all digits).
    #[arg(long)]
    count: Option<usize>,
    /// Seed of the synthetic data sets (sbm, shapes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Read MNIST from this folder of IDX files (t10k-/train-*-idx?-ubyte[.gz]) instead of
    /// the shipped 10 000-digit subset.
    #[arg(long)]
    mnist_dir: Option<PathBuf>,
}

/// Subcommands of `eqaug data`.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Print counts, class balance and value ranges of the data sets.
    Describe {
        /// The data set (default: all of them).
        #[arg(long, value_enum)]
        dataset: Option<DatasetName>,
        #[command(flatten)]
        source: Source,
    },
    /// Write a data set as x.npy, y.npy (and masks.npy for shapes) into a folder.
    Export {
        /// The data set.
        #[arg(long, value_enum)]
        dataset: DatasetName,
        #[command(flatten)]
        source: Source,
        /// Output folder (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Every file `eqaug data export` can write.
const EXPORT_FILES: [&str; 3] = ["x.npy", "y.npy", "masks.npy"];

fn load_mnist(source: &Source) -> Result<mnist::Mnist, eqaug_data::DataError> {
    match &source.mnist_dir {
        Some(dir) => mnist::load_idx_dir(dir),
        None => mnist::load_shipped(),
    }
}

/// Refuses a `--count` whose samples would not fit in memory (the data are held a few times
/// over while they are generated and written), before anything is allocated.
fn check_count(name: DatasetName, source: &Source) -> Result<(), Box<dyn std::error::Error>> {
    let Some(count) = source.count else {
        return Ok(());
    };
    // Values per sample (inputs and targets), in f64.
    let per_sample: u64 = match name {
        DatasetName::Sbm => 101,
        DatasetName::Mnist => 794,
        DatasetName::Mnist14 => 206,
        DatasetName::Shapes => {
            let side = shapes::ShapesParams::default().size as u64;
            3 * side * side
        }
    };
    let bytes = (count as u64)
        .saturating_mul(per_sample)
        .saturating_mul(8 * 3);
    let estimate = eqaug_harness::memory::Estimate {
        what: format!("data export of {count} samples"),
        parts: vec![eqaug_harness::memory::Part {
            key: format!("--count = {count}"),
            what: format!("{count} samples of {per_sample} values"),
            reduce: "`--count`".into(),
            bytes,
        }],
    };
    Ok(estimate.check(eqaug_harness::memory::limit(None))?)
}

fn build(name: DatasetName, source: &Source) -> Result<Dataset, Box<dyn std::error::Error>> {
    check_count(name, source)?;
    Ok(match name {
        DatasetName::Sbm => {
            let mut p = sbm::SbmParams::default();
            p.count = source.count.unwrap_or(p.count);
            sbm::try_generate(&p, source.seed)?
        }
        DatasetName::Shapes => {
            let mut p = shapes::ShapesParams::default();
            p.count = source.count.unwrap_or(p.count);
            shapes::try_generate(&p, source.seed)?
        }
        DatasetName::Mnist => mnist::mnist_unit(&load_mnist(source)?, source.count),
        DatasetName::Mnist14 => mnist::try_mnist14(&load_mnist(source)?, source.count)?,
    })
}

/// Runs `eqaug data ...`.
pub fn run(cmd: DataCommand) -> super::CliResult {
    match cmd {
        DataCommand::Describe { dataset, source } => {
            let names = match dataset {
                Some(d) => vec![d],
                None => vec![
                    DatasetName::Sbm,
                    DatasetName::Mnist,
                    DatasetName::Mnist14,
                    DatasetName::Shapes,
                ],
            };
            for name in names {
                println!("{}", summarize(&build(name, &source)?));
            }
            Ok(())
        }
        DataCommand::Export {
            dataset,
            source,
            out,
        } => {
            let d = build(dataset, &source)?;
            let written = write_npy_dir(&d, &out)?;
            for path in &written {
                println!("wrote {}", path.display());
            }
            // A file of an earlier export of another data set (masks.npy of shapes) would
            // otherwise sit beside the new x.npy and y.npy as if it belonged to them.
            for name in EXPORT_FILES {
                let path = out.join(name);
                if !written.contains(&path) && path.is_file() {
                    std::fs::remove_file(&path).map_err(|e| {
                        format!("{}: cannot remove a stale file: {e}", path.display())
                    })?;
                    println!("removed {} (left by an earlier export)", path.display());
                }
            }
            Ok(())
        }
    }
}
