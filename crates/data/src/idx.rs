//! Reading and writing the IDX format of the MNIST files (unsigned-byte data only), raw or
//! gzip-compressed (detected from the gzip header, whatever the file name).
//!
//! An IDX file is a big-endian `u32` magic number `0x0000TTDD` (`TT = 0x08` for unsigned
//! bytes, `DD` the number of dimensions), `DD` big-endian `u32` dimensions, then the data
//! row-major. MNIST images are `0x00000803` (count, rows, cols), labels `0x00000801`
//! (count). The reader checks the magic number, the dimensions (product overflow, zeros
//! where not allowed) and that the data length is exactly what the header announces; it
//! never allocates more than the file actually holds.

use crate::DataError;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Magic number of an IDX file of unsigned bytes with three dimensions (MNIST images).
pub const MAGIC_IMAGES: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (MNIST labels).
pub const MAGIC_LABELS: u32 = 0x0000_0801;

/// The content of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxU8 {
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The data, row-major, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.to_path_buf();
    move |source| DataError::Io {
        path,
        action,
        source,
    }
}

/// Opens `path` for reading, transparently decompressing gzip.
fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let mut file = BufReader::new(File::open(path).map_err(io_err(path, "cannot open"))?);
    let mut head = [0u8; 2];
    let got = read_up_to(&mut file, &mut head).map_err(io_err(path, "cannot read"))?;
    let head = head[..got].to_vec();
    let chained = std::io::Cursor::new(head.clone()).chain(file);
    if head == [0x1f, 0x8b] {
        Ok(Box::new(GzDecoder::new(chained)))
    } else {
        Ok(Box::new(chained))
    }
}

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads an IDX file of unsigned bytes with magic number `magic` (e.g.
/// [`MAGIC_IMAGES`], [`MAGIC_LABELS`]).
pub fn read_idx_u8(path: &Path, magic: u32) -> Result<IdxU8, DataError> {
    let mut r = open(path)?;
    let read_err = io_err(path, "cannot read (corrupt gzip?)");
    let mut word = [0u8; 4];
    let got = read_up_to(&mut r, &mut word).map_err(read_err)?;
    if got < 4 {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "header",
            expected: 4,
            found: got as u64,
        });
    }
    let found = u32::from_be_bytes(word);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.into(),
            found,
            expected: magic,
            what: describe_magic(magic),
        });
    }
    let ndims = (magic & 0xff) as usize;
    let mut header = vec![0u8; 4 * ndims];
    let got =
        read_up_to(&mut r, &mut header).map_err(io_err(path, "cannot read (corrupt gzip?)"))?;
    if got < header.len() {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "header",
            expected: 4 + header.len() as u64,
            found: 4 + got as u64,
        });
    }
    let dims64: Vec<u64> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)
        .collect();
    let bad = |reason: String| DataError::BadDimensions {
        path: path.into(),
        dims: dims64.clone(),
        reason,
    };
    // Image sides must be positive; a count of zero samples is allowed.
    if dims64.iter().skip(1).any(|&d| d == 0) {
        return Err(bad("a zero size other than the sample count".into()));
    }
    let total = dims64
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&t| usize::try_from(t).is_ok() && t <= isize::MAX as u64)
        .ok_or_else(|| bad("the product of the dimensions overflows".into()))?;
    let dims: Vec<usize> = dims64.iter().map(|&d| d as usize).collect();
    // Read at most total + 1 bytes: never trust the header for an allocation.
    let mut data = Vec::new();
    r.by_ref()
        .take(total)
        .read_to_end(&mut data)
        .map_err(io_err(path, "cannot read (corrupt gzip?)"))?;
    if (data.len() as u64) < total {
        return Err(DataError::Truncated {
            path: path.into(),
            what: "data",
            expected: total,
            found: data.len() as u64,
        });
    }
    let mut extra = [0u8; 1];
    let more =
        read_up_to(&mut r, &mut extra).map_err(io_err(path, "cannot read (corrupt gzip?)"))?;
    if more > 0 {
        return Err(DataError::TrailingData {
            path: path.into(),
            expected: total,
            extra_at_least: more as u64,
        });
    }
    Ok(IdxU8 { dims, data })
}

fn describe_magic(magic: u32) -> &'static str {
    match magic {
        MAGIC_IMAGES => "IDX unsigned bytes, 3 dimensions: images",
        MAGIC_LABELS => "IDX unsigned bytes, 1 dimension: labels",
        _ => "IDX unsigned bytes",
    }
}

/// Writes an IDX file of unsigned bytes with dimensions `dims` (at most 255 of them, each
/// below 2^32), gzip-compressed if `gzip`. The data must hold `dims.iter().product()`
/// bytes.
pub fn write_idx_u8(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> Result<(), DataError> {
    let invalid = |reason: String| DataError::BadDimensions {
        path: path.into(),
        dims: dims.iter().map(|&d| d as u64).collect(),
        reason,
    };
    if dims.is_empty() || dims.len() > 255 {
        return Err(invalid("need 1 to 255 dimensions".into()));
    }
    if dims.iter().any(|&d| u32::try_from(d).is_err()) {
        return Err(invalid("a dimension does not fit in 32 bits".into()));
    }
    let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if total != Some(data.len()) {
        return Err(invalid(format!("the data hold {} bytes", data.len())));
    }
    let mut bytes = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    bytes.extend_from_slice(&(0x0800u32 | dims.len() as u32).to_be_bytes());
    for &d in dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let file = File::create(path).map_err(io_err(path, "cannot create"))?;
    let mut w = BufWriter::new(file);
    if gzip {
        let mut gz = GzEncoder::new(w, flate2::Compression::best());
        gz.write_all(&bytes).map_err(io_err(path, "cannot write"))?;
        w = gz.finish().map_err(io_err(path, "cannot write"))?;
    } else {
        w.write_all(&bytes).map_err(io_err(path, "cannot write"))?;
    }
    w.flush().map_err(io_err(path, "cannot write"))
}

/// Reads an MNIST-style image file: returns `(count, rows, cols, pixels)`.
pub fn read_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let idx = read_idx_u8(path, MAGIC_IMAGES)?;
    Ok((idx.dims[0], idx.dims[1], idx.dims[2], idx.data))
}

/// Reads an MNIST-style label file.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_idx_u8(path, MAGIC_LABELS)?.data)
}

/// Writes MNIST-style image (`count x rows x cols`) and label files.
pub fn write_mnist_pair(
    images_path: &Path,
    labels_path: &Path,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    labels: &[u8],
    gzip: bool,
) -> Result<(), DataError> {
    write_idx_u8(images_path, &[labels.len(), rows, cols], pixels, gzip)?;
    write_idx_u8(labels_path, &[labels.len()], labels, gzip)
}
