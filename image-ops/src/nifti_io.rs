//! NIfTI-1 reading and writing: whole images, single volumes and volume
//! streams, with nibabel's scaling and affine conventions.
//!
//! Reading: the 348-byte header is parsed by the `nifti` crate and then
//! validated here (the crate accepts negative dimensions, absurd sizes and
//! non-finite voxel sizes). Voxel data is decoded here rather than by the
//! crate because the pipeline needs what the crate cannot do: seek to one
//! volume of a `.nii`, stream a `.nii.gz` one volume at a time, and apply
//! `scl_slope` / `scl_inter` exactly as nibabel's `get_fdata(dtype=float32)`
//! does (scaling in f64, then rounding once to f32).
//!
//! Headers are untrusted: before anything is read, the size they declare is
//! checked against what the file can hold (its length for a `.nii`; for a
//! `.nii.gz`, the most its compressed bytes can decompress to), and voxel
//! buffers grow as bytes actually arrive, a bounded chunk at a time, so a
//! lying or truncated file costs at most a few volumes of memory.
//!
//! Arrays come back in NIfTI's own memory order (x fastest, "Fortran"
//! layout); index them normally, and use `as_slice_memory_order` rather than
//! `as_slice` for raw access.
//!
//! Writing ([`write_nifti`], [`VolumeWriter`]) keeps the input's
//! [`Geometry`] (both forms, their codes, units) and goes into a temporary
//! file in the target folder, which is renamed into place only once
//! complete. [`VolumeWriter`] writes one volume at a time, so an image of any
//! size is written in the memory of one volume.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{
    Array3, Array4, ArrayBase, ArrayView3, ArrayView4, Data, Dimension, Ix3, ShapeBuilder,
};
use nifti::{Endianness, NiftiHeader};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::atomic;
use crate::error::{file_name, ImageError, Result};
use crate::volume::{Image4, Volume};

/// Size of a NIfTI-1 header on disk.
const HEADER_BYTES: usize = 348;

/// Where voxel data starts at the earliest in a single-file NIfTI-1 (header
/// plus the 4-byte extension flag); nibabel raises smaller offsets to this.
const MIN_VOX_OFFSET: u64 = 352;

/// The largest amount of voxel data a header may describe. Bigger is taken
/// as a corrupt header rather than an attempt to allocate it.
const MAX_DATA_BYTES: u64 = 1 << 40;

/// Deflate's largest expansion: a 1-bit code for a 258-byte match and a
/// 1-bit distance code give 258 bytes per 2 bits. N bytes of a `.nii.gz`
/// (gzip framing included, which only lowers the ratio) therefore hold at
/// most `1032 × N` decompressed bytes.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Bytes read, decoded or written at a time. Bounds the raw buffer, and how
/// far a decoded buffer is grown ahead of the bytes that actually arrived.
const IO_CHUNK_BYTES: usize = 4 << 20;

/// nibabel's tolerance for `1 - (b² + c² + d²)` slightly below 0 in a qform
/// quaternion (`-3 * float32 eps`).
const QUATERNION_THRESHOLD: f64 = -3.0 * f32::EPSILON as f64;

/// `xyzt_units` of millimetres (2) and seconds (8).
const UNITS_MM_SECONDS: u8 = 2 | 8;

/// The on-disk voxel types this reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// `NIFTI_TYPE_UINT8` (code 2).
    U8,
    /// `NIFTI_TYPE_INT16` (code 4).
    I16,
    /// `NIFTI_TYPE_UINT16` (code 512).
    U16,
    /// `NIFTI_TYPE_INT32` (code 8).
    I32,
    /// `NIFTI_TYPE_FLOAT32` (code 16).
    F32,
    /// `NIFTI_TYPE_FLOAT64` (code 64).
    F64,
}

impl Datatype {
    fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => Datatype::U8,
            4 => Datatype::I16,
            512 => Datatype::U16,
            8 => Datatype::I32,
            16 => Datatype::F32,
            64 => Datatype::F64,
            _ => return None,
        })
    }

    /// The NIfTI-1 `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            Datatype::U8 => 2,
            Datatype::I16 => 4,
            Datatype::U16 => 512,
            Datatype::I32 => 8,
            Datatype::F32 => 16,
            Datatype::F64 => 64,
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            Datatype::U8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::F32 => 4,
            Datatype::F64 => 8,
        }
    }
}

/// Where an image sits in space, as its NIfTI-1 header says: what an output
/// derived from an input must carry over so that it overlays the input in
/// any viewer (the same forms with the same codes, the same units).
///
/// Fields of a form whose code is 0 are unused and held as zeros, so two
/// geometries compare equal exactly when a reader would place the images
/// alike. Values are f64 but come from (and are written as) float32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// `sform_code`: 0 unset, 1 scanner, 2 aligned, 3 Talairach, 4 MNI.
    pub sform_code: i16,
    /// `srow_x`, `srow_y`, `srow_z`: the first three rows of the sform
    /// affine (voxel indices to world mm).
    pub srow: [[f64; 4]; 3],
    /// `qform_code`, with the same meanings as `sform_code`.
    pub qform_code: i16,
    /// `quatern_b`, `quatern_c`, `quatern_d`: the qform rotation (`a` is
    /// the non-negative root making a unit quaternion).
    pub quatern: [f64; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`: the qform translation.
    pub qoffset: [f64; 3],
    /// `pixdim[0]`: -1 flips the qform's z axis, 1 does not (nibabel reads
    /// any value but -1 as 1).
    pub qfac: f64,
    /// `pixdim[1..=3]`: voxel sizes (1 for axes the image lacks).
    pub voxel_size: [f64; 3],
    /// `xyzt_units`: spatial units in bits 0–2 (2 = mm), temporal units in
    /// bits 3–5 (8 = s), kept whole as DIPY's `save_nifti` keeps the input
    /// header's.
    pub xyzt_units: u8,
}

impl Geometry {
    /// The geometry of code that knows only an affine and voxel sizes (the
    /// phantom generator): the affine as an "aligned" sform (code 2), no
    /// qform, millimetres and seconds. Only the affine's first three rows
    /// are used.
    pub fn from_affine(affine: &[[f64; 4]; 4], voxel_size: [f64; 3]) -> Geometry {
        Geometry {
            sform_code: 2,
            srow: [affine[0], affine[1], affine[2]],
            qform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            qfac: 1.0,
            voxel_size,
            xyzt_units: UNITS_MM_SECONDS,
        }
    }

    /// The voxel-to-world affine nibabel uses for an image of `shape`: the
    /// sform if `sform_code > 0`, else the qform if `qform_code > 0`, else
    /// nibabel's fallback from shape and voxel sizes.
    pub fn affine(&self, shape: [usize; 3]) -> [[f64; 4]; 4] {
        if self.sform_code > 0 {
            let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
            a[..3].copy_from_slice(&self.srow);
            a
        } else if self.qform_code > 0 {
            self.qform_affine()
        } else {
            base_affine(shape, self.voxel_size)
        }
    }

    /// nibabel's `get_qform`: rotation from the quaternion (the first
    /// component filled in as the non-negative root), voxel sizes with
    /// `qfac` on z, offsets as translation.
    fn qform_affine(&self) -> [[f64; 4]; 4] {
        let [b, c, d] = self.quatern;
        // Slightly non-unit quaternions (within nibabel's tolerance, which
        // `check` enforces) get a = 0, as in nibabel.
        let w = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let n = w * w + b * b + c * c + d * d;
        let r = if n < f64::EPSILON {
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        } else {
            let s = 2.0 / n;
            let (x, y, z) = (b * s, c * s, d * s);
            let (wx, wy, wz) = (w * x, w * y, w * z);
            let (xx, xy, xz) = (b * x, b * y, b * z);
            let (yy, yz, zz) = (c * y, c * z, d * z);
            [
                [1.0 - (yy + zz), xy - wz, xz + wy],
                [xy + wz, 1.0 - (xx + zz), yz - wx],
                [xz - wy, yz + wx, 1.0 - (xx + yy)],
            ]
        };
        let qfac = if self.qfac == -1.0 { -1.0 } else { 1.0 };
        let v = self.voxel_size;
        let scale = [v[0], v[1], v[2] * qfac];
        let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] = r[i][j] * scale[j];
            }
            a[i][3] = self.qoffset[i];
        }
        a
    }

    /// The first unusable field, as `(field, value, problem)`: a form in
    /// use with a non-finite value or a non-unit quaternion, a `qfac` other
    /// than ±1, a voxel size that is not positive and finite.
    fn check(&self) -> Option<(String, String, &'static str)> {
        for (i, v) in self.voxel_size.iter().enumerate() {
            if !v.is_finite() || *v <= 0.0 {
                return Some((
                    format!("pixdim[{}]", i + 1),
                    v.to_string(),
                    "is not a positive finite voxel size",
                ));
            }
        }
        if self.qfac != 1.0 && self.qfac != -1.0 {
            return Some((
                "pixdim[0]".into(),
                self.qfac.to_string(),
                "is not a qfac of -1 or 1",
            ));
        }
        if self.sform_code > 0 {
            for (name, row) in ["srow_x", "srow_y", "srow_z"].iter().zip(&self.srow) {
                if row.iter().any(|v| !v.is_finite()) {
                    return Some((
                        (*name).into(),
                        format!("{row:?}"),
                        "holds a non-finite value",
                    ));
                }
            }
        }
        if self.qform_code > 0 {
            let [b, c, d] = self.quatern;
            if !self
                .quatern
                .iter()
                .chain(&self.qoffset)
                .all(|v| v.is_finite())
            {
                return Some((
                    "quatern_b/c/d, qoffset_x/y/z".into(),
                    format!(
                        "{:?}",
                        [b, c, d, self.qoffset[0], self.qoffset[1], self.qoffset[2]]
                    ),
                    "holds a non-finite value",
                ));
            }
            if 1.0 - (b * b + c * c + d * d) < QUATERNION_THRESHOLD {
                return Some((
                    "quatern_b/c/d".into(),
                    format!("{:?}", [b, c, d]),
                    "is not part of a unit quaternion",
                ));
            }
        }
        None
    }
}

/// A validated NIfTI-1 header: everything needed to locate, decode and
/// place the voxel data.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageHeader {
    /// `[x, y, z, t]`; `t` is 1 for a 3-D image, and missing spatial
    /// dimensions of 1-D / 2-D images are 1.
    pub shape: [usize; 4],
    /// The on-disk voxel type.
    pub datatype: Datatype,
    /// Byte offset of the voxel data in the (decompressed) file.
    pub vox_offset: u64,
    /// Effective scale: 1 when `scl_slope` is 0 or not finite (nibabel).
    pub scl_slope: f64,
    /// Effective intercept: 0 when the slope is unused (nibabel).
    pub scl_inter: f64,
    /// Voxel-to-world affine: sform if `sform_code > 0`, else qform if
    /// `qform_code > 0`, else nibabel's fallback from shape and voxel sizes.
    pub affine: [[f64; 4]; 4],
    /// Voxel sizes in mm (`pixdim[1..=3]`).
    pub voxel_size: [f64; 3],
    /// Byte order of the file.
    pub big_endian: bool,
    /// Both forms, their codes and the units, for writing outputs.
    geometry: Geometry,
}

impl ImageHeader {
    /// Number of 3-D volumes (`dim[4]`, 1 for a 3-D image).
    pub fn n_volumes(&self) -> usize {
        self.shape[3]
    }

    /// Voxels in one 3-D volume.
    pub fn volume_len(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }

    /// Bytes of one 3-D volume on disk.
    pub fn volume_bytes(&self) -> u64 {
        (self.volume_len() * self.datatype.size()) as u64
    }

    /// Bytes of voxel data the header promises.
    pub fn data_bytes(&self) -> u64 {
        self.volume_bytes() * self.n_volumes() as u64
    }

    /// What an output derived from this image must keep to overlay it:
    /// pass it to [`write_nifti`] or [`VolumeWriter::create`].
    pub fn geometry(&self) -> Geometry {
        self.geometry.clone()
    }
}

/// Parses and validates a NIfTI-1 header from the start of `reader`
/// (already decompressed). `file` only names the source in errors.
///
/// This is the entry point the fuzz target drives: it must return an error,
/// never panic, whatever the bytes.
pub fn parse_header<R: Read>(mut reader: R, file: &Path) -> Result<ImageHeader> {
    let mut raw = [0u8; HEADER_BYTES];
    let (n, read) = read_full(&mut reader, &mut raw);
    if let Err(e) = read {
        return Err(stream_error(file, e, n as u64, None));
    }
    if n < HEADER_BYTES {
        return Err(ImageError::TruncatedHeader {
            file: file_name(file),
        });
    }
    let magic = &raw[344..348];
    if magic == b"ni1\0" {
        return Err(ImageError::field(
            file,
            "magic",
            "\"ni1\\0\"",
            "marks a .hdr/.img pair, which is not supported (use a single-file .nii / .nii.gz)",
        ));
    }
    let h = match NiftiHeader::from_reader(&raw[..]) {
        Ok(h) => h,
        Err(nifti::NiftiError::InvalidFormat) => {
            return Err(ImageError::field(
                file,
                "magic",
                format!("{:?}", String::from_utf8_lossy(magic)),
                "is not the NIfTI-1 magic \"n+1\\0\"",
            ))
        }
        Err(e) => {
            return Err(ImageError::field(
                file,
                "header",
                "(348 bytes)",
                format!("cannot be parsed: {e}"),
            ))
        }
    };
    validate(&h, file)
}

/// Checks every field the reader relies on and derives the effective values.
fn validate(h: &NiftiHeader, file: &Path) -> Result<ImageHeader> {
    if h.sizeof_hdr != HEADER_BYTES as i32 {
        return Err(ImageError::field(
            file,
            "sizeof_hdr",
            h.sizeof_hdr,
            "is not 348 (only NIfTI-1 is supported)",
        ));
    }
    // The crate stores dims as u16; NIfTI-1 defines them as signed shorts.
    let dim: Vec<i16> = h.dim.iter().map(|&d| d as i16).collect();
    let ndim = dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(ImageError::field(
            file,
            "dim[0]",
            ndim,
            "is not a number of dimensions (1 to 7)",
        ));
    }
    let ndim = ndim as usize;
    for (i, &d) in dim.iter().enumerate().take(ndim + 1).skip(1) {
        if d <= 0 {
            return Err(ImageError::field(
                file,
                format!("dim[{i}]"),
                d,
                "is not a valid dimension",
            ));
        }
        if i > 4 && d != 1 {
            return Err(ImageError::field(
                file,
                format!("dim[{i}]"),
                d,
                "is not 1: only 3-D and 4-D images are supported",
            ));
        }
    }
    let mut shape = [1usize; 4];
    for (i, s) in shape.iter_mut().enumerate().take(ndim.min(4)) {
        *s = dim[i + 1] as usize;
    }

    let datatype = Datatype::from_code(h.datatype).ok_or_else(|| {
        ImageError::field(
            file,
            "datatype",
            h.datatype,
            "is not a supported voxel type (uint8 2, int16 4, int32 8, float32 16, float64 64, uint16 512)",
        )
    })?;
    let bits = 8 * datatype.size() as i16;
    if h.bitpix != bits {
        return Err(ImageError::field(
            file,
            "bitpix",
            h.bitpix,
            format!(
                "disagrees with datatype {} ({bits} bits per voxel)",
                h.datatype
            ),
        ));
    }

    let voxels = shape
        .iter()
        .try_fold(1u64, |acc, &s| acc.checked_mul(s as u64));
    let bytes = voxels.and_then(|v| v.checked_mul(datatype.size() as u64));
    match bytes {
        Some(b) if b <= MAX_DATA_BYTES => {}
        _ => {
            return Err(ImageError::field(
                file,
                "dim",
                format!("{:?}", &dim[..=ndim]),
                format!(
                    "describes more than 1 TiB of voxel data at {} bytes per voxel (datatype {})",
                    datatype.size(),
                    h.datatype
                ),
            ))
        }
    }

    let off = h.vox_offset;
    if !off.is_finite() || off < 0.0 || off as f64 > MAX_DATA_BYTES as f64 {
        return Err(ImageError::field(
            file,
            "vox_offset",
            off,
            "is not a usable byte offset",
        ));
    }
    let vox_offset = (off as u64).max(MIN_VOX_OFFSET);

    let (scl_slope, scl_inter) = {
        let slope = f64::from(h.scl_slope);
        let inter = f64::from(h.scl_inter);
        if slope == 0.0 || !slope.is_finite() {
            (1.0, 0.0)
        } else if !inter.is_finite() {
            return Err(ImageError::field(
                file,
                "scl_inter",
                inter,
                "is not finite although scl_slope is in use",
            ));
        } else {
            (slope, inter)
        }
    };

    // Sizes of axes the image lacks are 1 whatever pixdim holds there.
    let mut voxel_size = [1.0f64; 3];
    for (i, v) in voxel_size.iter_mut().enumerate().take(ndim.min(3)) {
        *v = f64::from(h.pixdim[i + 1]);
    }
    let sform = h.sform_code > 0;
    let qform = h.qform_code > 0;
    let geometry = Geometry {
        sform_code: if sform { h.sform_code } else { 0 },
        srow: if sform {
            [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from))
        } else {
            [[0.0; 4]; 3]
        },
        qform_code: if qform { h.qform_code } else { 0 },
        quatern: if qform {
            [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from)
        } else {
            [0.0; 3]
        },
        qoffset: if qform {
            [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from)
        } else {
            [0.0; 3]
        },
        // nibabel silently treats a qfac other than -1 as 1.
        qfac: if h.pixdim[0] == -1.0 { -1.0 } else { 1.0 },
        voxel_size,
        xyzt_units: h.xyzt_units,
    };
    if let Some((field, value, problem)) = geometry.check() {
        return Err(ImageError::field(file, field, value, problem));
    }

    Ok(ImageHeader {
        shape,
        datatype,
        vox_offset,
        scl_slope,
        scl_inter,
        affine: geometry.affine([shape[0], shape[1], shape[2]]),
        voxel_size,
        big_endian: h.endianness == Endianness::Big,
        geometry,
    })
}

/// nibabel's fallback when neither form is set: x flipped, centred on the volume.
fn base_affine(shape: [usize; 3], voxel_size: [f64; 3]) -> [[f64; 4]; 4] {
    let zooms = [-voxel_size[0], voxel_size[1], voxel_size[2]];
    let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
    for i in 0..3 {
        a[i][i] = zooms[i];
        a[i][3] = -((shape[i] as f64 - 1.0) / 2.0) * zooms[i];
    }
    a
}

/// Reads into `buf` until it is full or the stream ends; returns how many
/// bytes arrived, and the error that stopped it early if any. Unlike
/// `read_exact`, a short stream is not an error here, so callers can tell
/// "data too short" from "stream corrupt", and the count survives an error
/// so messages can say where it happened.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> (usize, io::Result<()>) {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Err(e)),
        }
    }
    (filled, Ok(()))
}

/// Maps an error of the (possibly decompressing) stream to the crate's
/// error. Plain reads only fail for I/O reasons; the decoder's failures are
/// gzip errors, placed by the decompressed `position` they happened at and
/// the `volume` being read, if any.
fn stream_error(
    file: &Path,
    e: io::Error,
    position: u64,
    volume: Option<(usize, usize)>,
) -> ImageError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            ImageError::Gzip {
                file: file_name(file),
                position,
                volume,
                source: e,
            }
        }
        _ => ImageError::io(file, "cannot read", e),
    }
}

/// The byte stream of a NIfTI file: plain (seekable) or gzip-decompressed.
enum Source {
    Plain(BufReader<File>),
    Gz(MultiGzDecoder<BufReader<File>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Gz(r) => r.read(buf),
        }
    }
}

/// An open NIfTI file positioned just after the header, whose header was
/// checked against what the file can hold.
struct Opened {
    reader: Source,
    header: ImageHeader,
}

impl Opened {
    fn is_gz(&self) -> bool {
        matches!(self.reader, Source::Gz(_))
    }
}

/// Opens `path`, telling gzip from plain by the first two bytes rather than
/// the name, parses the header and checks that the file can hold what it
/// declares.
fn open(path: &Path) -> Result<Opened> {
    let mut file = File::open(path).map_err(|e| ImageError::io(path, "cannot open", e))?;
    let disk_len = file
        .metadata()
        .map_err(|e| ImageError::io(path, "cannot stat", e))?
        .len();
    let mut sniff = [0u8; 2];
    let (n, read) = read_full(&mut file, &mut sniff);
    read.map_err(|e| ImageError::io(path, "cannot read", e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ImageError::io(path, "cannot seek", e))?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    let mut reader = if n == 2 && sniff == [0x1f, 0x8b] {
        Source::Gz(MultiGzDecoder::new(buffered))
    } else {
        Source::Plain(buffered)
    };
    let header = parse_header(&mut reader, path)?;
    let opened = Opened { reader, header };
    check_capacity(&opened, path, disk_len)?;
    Ok(opened)
}

/// Refuses a header that declares more than the file can hold, before any
/// voxel buffer exists: a `.nii` must be at least `vox_offset` plus the
/// data long; a `.nii.gz` of N bytes decompresses to at most 1032 × N.
fn check_capacity(o: &Opened, path: &Path, disk_len: u64) -> Result<()> {
    let h = &o.header;
    // Both terms are at most 1 TiB (checked in `validate`): no overflow.
    let declared = h.vox_offset + h.data_bytes();
    if !o.is_gz() {
        if disk_len < declared {
            return Err(truncated(path, h, disk_len));
        }
        return Ok(());
    }
    let capacity = disk_len.saturating_mul(MAX_DEFLATE_RATIO);
    if declared > capacity {
        let [x, y, z, t] = h.shape;
        return Err(ImageError::HeaderExceedsFile {
            file: file_name(path),
            fields: format!(
                "dim[1..=4] = [{x}, {y}, {z}, {t}], datatype = {} ({} bytes per voxel), \
                 vox_offset = {}",
                h.datatype.code(),
                h.datatype.size(),
                h.vox_offset
            ),
            declared,
            disk_bytes: disk_len,
            capacity,
        });
    }
    Ok(())
}

/// Reads and validates the header of a `.nii` / `.nii.gz` file, and checks
/// that the file can hold the data it declares (see the module docs).
pub fn read_header(path: impl AsRef<Path>) -> Result<ImageHeader> {
    Ok(open(path.as_ref())?.header)
}

/// Which volume a stream position falls in, for error messages; `None`
/// before the voxel data.
fn volume_at(h: &ImageHeader, position: u64) -> Option<(usize, usize)> {
    let into_data = position.checked_sub(h.vox_offset)?;
    let index = (into_data / h.volume_bytes()).min(h.n_volumes() as u64 - 1);
    Some((index as usize, h.n_volumes()))
}

/// Reads and discards the stream from `position` up to `end`, failing if it
/// ends first.
fn skip(
    reader: &mut dyn Read,
    position: u64,
    end: u64,
    path: &Path,
    h: &ImageHeader,
) -> Result<()> {
    let mut buf = vec![0u8; (end - position).min(64 << 10) as usize];
    let mut at = position;
    while at < end {
        let want = (end - at).min(buf.len() as u64) as usize;
        let (n, read) = read_full(reader, &mut buf[..want]);
        at += n as u64;
        if let Err(e) = read {
            return Err(stream_error(path, e, at, volume_at(h, at)));
        }
        if n < want {
            return Err(truncated(path, h, at));
        }
    }
    Ok(())
}

/// The error for data ending early; `found_end` is the stream offset where it ended.
fn truncated(path: &Path, h: &ImageHeader, found_end: u64) -> ImageError {
    let found = found_end.saturating_sub(h.vox_offset);
    ImageError::TruncatedData {
        file: file_name(path),
        offset: h.vox_offset,
        expected: h.data_bytes(),
        found,
        volume: (found / h.volume_bytes()) as usize,
        volumes: h.n_volumes(),
    }
}

/// A type voxels are decoded into: `f32` (the pipeline's) or `f64`
/// (nibabel's `get_fdata()` default, used to read float64 results exactly).
pub trait VoxelType: Copy + Send + 'static + sealed::Sealed {
    /// The voxel value, already scaled in f64, rounded once to `Self`.
    fn from_f64(v: f64) -> Self;
}

impl VoxelType for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl VoxelType for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Decodes raw volume bytes with nibabel's scaling: every on-disk type
/// converts exactly to f64, the slope and intercept (when in use) are
/// applied there, and the result is rounded once to `T`.
fn decode<T: VoxelType>(raw: &[u8], h: &ImageHeader, out: &mut Vec<T>) {
    let (slope, inter) = (h.scl_slope, h.scl_inter);
    let scale = |v: f64| -> T {
        let mut v = v;
        if slope != 1.0 {
            v *= slope;
        }
        if inter != 0.0 {
            v += inter;
        }
        T::from_f64(v)
    };
    macro_rules! run {
        ($t:ty, $n:expr) => {
            out.extend(raw.chunks_exact($n).map(|c| {
                let mut b = [0u8; $n];
                b.copy_from_slice(c);
                let v = if h.big_endian {
                    <$t>::from_be_bytes(b)
                } else {
                    <$t>::from_le_bytes(b)
                };
                scale(v as f64)
            }))
        };
    }
    match h.datatype {
        Datatype::U8 => run!(u8, 1),
        Datatype::I16 => run!(i16, 2),
        Datatype::U16 => run!(u16, 2),
        Datatype::I32 => run!(i32, 4),
        Datatype::F32 => run!(f32, 4),
        Datatype::F64 => run!(f64, 8),
    }
}

/// Makes room for `add` more elements in `buf`, which will never need more
/// than `limit`. Growth follows the bytes that arrived (doubling, capped at
/// `limit`), never the header's promise alone, and a refusal is an error
/// rather than an abort.
fn grow<T>(buf: &mut Vec<T>, add: usize, limit: usize, path: &Path) -> Result<()> {
    let need = buf.len() + add;
    if need <= buf.capacity() {
        return Ok(());
    }
    let target = (buf.capacity() * 2).min(limit).max(need);
    buf.try_reserve_exact(target - buf.len())
        .map_err(|_| ImageError::field(path, "dim", target, "voxels do not fit in memory"))
}

/// Reads volume `index`'s bytes from the stream (positioned at its start)
/// a chunk at a time and appends the decoded voxels to `out`, whose length
/// will never exceed `limit`. `raw` is the reusable chunk buffer.
fn read_volume_into<T: VoxelType>(
    o: &mut Opened,
    path: &Path,
    index: usize,
    raw: &mut Vec<u8>,
    out: &mut Vec<T>,
    limit: usize,
) -> Result<()> {
    let h = &o.header;
    let size = h.datatype.size();
    let vb = h.volume_bytes();
    let start = h.vox_offset + index as u64 * vb;
    let mut done = 0u64;
    while done < vb {
        // IO_CHUNK_BYTES is a multiple of every voxel size, so chunks hold
        // whole voxels.
        let want = (vb - done).min(IO_CHUNK_BYTES as u64) as usize;
        raw.resize(want, 0);
        let (n, read) = read_full(&mut o.reader, raw);
        let at = start + done + n as u64;
        if let Err(e) = read {
            return Err(stream_error(path, e, at, Some((index, h.n_volumes()))));
        }
        if n < want {
            return Err(truncated(path, h, at));
        }
        grow(out, want / size, limit, path)?;
        decode(raw, h, out);
        done += want as u64;
    }
    Ok(())
}

/// Reads a whole 3-D or 4-D image as f32 (`[x, y, z, t]`), as nibabel's
/// `get_fdata(dtype=float32)` would.
///
/// A `.nii.gz` is decompressed once, volume by volume, straight into the
/// result; its gzip trailer is checked too, so a truncated or corrupt file is
/// an error even when the voxel data itself is complete.
pub fn read_image(path: impl AsRef<Path>) -> Result<Image4> {
    let (data, h) = read_array::<f32>(path.as_ref())?;
    Ok(Image4 {
        data,
        affine: h.affine,
        voxel_size: h.voxel_size,
    })
}

/// Reads a whole image into `T` (`[x, y, z, t]`) with its header; `f64`
/// matches nibabel's `get_fdata()` and reads float64 files exactly.
///
/// The result grows as data arrives, so a file shorter than its header
/// claims fails having allocated about what it holds, not what it claims.
pub fn read_array<T: VoxelType>(path: impl AsRef<Path>) -> Result<(Array4<T>, ImageHeader)> {
    let path = path.as_ref();
    let mut o = open(path)?;
    let h = o.header.clone();
    skip(&mut o.reader, HEADER_BYTES as u64, h.vox_offset, path, &h)?;
    let total = h.volume_len() * h.n_volumes();
    let mut data = Vec::new();
    let mut raw = Vec::new();
    for t in 0..h.n_volumes() {
        read_volume_into(&mut o, path, t, &mut raw, &mut data, total)?;
    }
    if o.is_gz() {
        // Reading to the end makes the decoder verify the CRC and length trailer.
        let end = h.vox_offset + h.data_bytes();
        io::copy(&mut o.reader, &mut io::sink()).map_err(|e| stream_error(path, e, end, None))?;
    }
    let [x, y, z, t] = h.shape;
    let data = Array4::from_shape_vec((x, y, z, t).f(), data)
        .map_err(|e| ImageError::field(path, "dim", format!("{:?}", h.shape), e.to_string()))?;
    Ok((data, h))
}

/// Reads volume `index` of a 3-D or 4-D image as f32 (`[x, y, z]`).
///
/// For a `.nii` this seeks to `vox_offset + index * volume_bytes` and decodes
/// that volume only. A `.nii.gz` cannot be seeked: the volumes before
/// `index` are decompressed and discarded (use [`volumes`] to visit many).
pub fn read_volume(path: impl AsRef<Path>, index: usize) -> Result<Volume> {
    let path = path.as_ref();
    let mut o = open(path)?;
    let h = o.header.clone();
    if index >= h.n_volumes() {
        return Err(ImageError::VolumeIndex {
            file: file_name(path),
            index,
            count: h.n_volumes(),
        });
    }
    let start = h.vox_offset + index as u64 * h.volume_bytes();
    match &mut o.reader {
        Source::Plain(r) => {
            r.seek(SeekFrom::Start(start))
                .map_err(|e| ImageError::io(path, "cannot seek", e))?;
        }
        Source::Gz(r) => skip(r, HEADER_BYTES as u64, start, path, &h)?,
    }
    let mut out = Vec::new();
    read_volume_into(
        &mut o,
        path,
        index,
        &mut Vec::new(),
        &mut out,
        h.volume_len(),
    )?;
    volume_from_vec(h.shape, out, path)
}

fn volume_from_vec(shape: [usize; 4], data: Vec<f32>, path: &Path) -> Result<Volume> {
    Array3::from_shape_vec((shape[0], shape[1], shape[2]).f(), data)
        .map_err(|e| ImageError::field(path, "dim", format!("{shape:?}"), e.to_string()))
}

/// An iterator over the 3-D volumes of a NIfTI file, in order, decompressing
/// sequentially: only one chunk of raw bytes and one decoded volume are held
/// at a time, and a volume's buffer grows as its bytes arrive. The first
/// short volume is an error naming it; after the first error the stream
/// yields nothing more.
pub struct VolumeStream {
    opened: Opened,
    path: PathBuf,
    next: usize,
    failed: bool,
    raw: Vec<u8>,
}

impl std::fmt::Debug for VolumeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStream")
            .field("path", &self.path)
            .field("header", &self.opened.header)
            .field("next", &self.next)
            .finish()
    }
}

impl VolumeStream {
    /// The file's validated header.
    pub fn header(&self) -> &ImageHeader {
        &self.opened.header
    }
}

/// Opens `path` for reading its volumes one at a time (see [`VolumeStream`]).
pub fn volumes(path: impl AsRef<Path>) -> Result<VolumeStream> {
    let path = path.as_ref().to_path_buf();
    let mut opened = open(&path)?;
    let h = opened.header.clone();
    skip(
        &mut opened.reader,
        HEADER_BYTES as u64,
        h.vox_offset,
        &path,
        &h,
    )?;
    Ok(VolumeStream {
        opened,
        path,
        next: 0,
        failed: false,
        raw: Vec::new(),
    })
}

impl Iterator for VolumeStream {
    type Item = Result<Volume>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.opened.header.n_volumes() {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let mut out = Vec::new();
        let limit = self.opened.header.volume_len();
        let result = read_volume_into(
            &mut self.opened,
            &self.path,
            index,
            &mut self.raw,
            &mut out,
            limit,
        )
        .and_then(|()| volume_from_vec(self.opened.header.shape, out, &self.path));
        self.failed = result.is_err();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.failed {
            0
        } else {
            self.opened.header.n_volumes() - self.next
        };
        (0, Some(left))
    }
}

/// Voxel types the writer stores: `u8` (masks), `f32` and `f64`.
pub trait NiftiElement: bytemuck::Pod + sealed::Sealed {
    /// The on-disk type written for `Self`.
    const DATATYPE: Datatype;
}
impl NiftiElement for u8 {
    const DATATYPE: Datatype = Datatype::U8;
}
impl NiftiElement for f32 {
    const DATATYPE: Datatype = Datatype::F32;
}
impl NiftiElement for f64 {
    const DATATYPE: Datatype = Datatype::F64;
}

/// Keeps [`NiftiElement`] and [`VoxelType`] to the types they were made for.
mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Writes a 3-D volume as NIfTI-1 with the given affine (stored as the sform,
/// code "aligned") and voxel sizes. The path must end in `.nii.gz` or `.nii`.
///
/// Shorthand for [`write_nifti`] with [`Geometry::from_affine`]; outputs
/// derived from an input should pass the input's geometry to
/// [`write_nifti`] instead.
pub fn write_volume<T: NiftiElement>(
    path: impl AsRef<Path>,
    data: ArrayView3<'_, T>,
    affine: &[[f64; 4]; 4],
    voxel_size: [f64; 3],
) -> Result<()> {
    write_nifti(path, &data, &Geometry::from_affine(affine, voxel_size))
}

/// Writes a 4-D image (`[x, y, z, t]`) as NIfTI-1; see [`write_volume`].
pub fn write_image4<T: NiftiElement>(
    path: impl AsRef<Path>,
    data: ArrayView4<'_, T>,
    affine: &[[f64; 4]; 4],
    voxel_size: [f64; 3],
) -> Result<()> {
    write_nifti(path, &data, &Geometry::from_affine(affine, voxel_size))
}

/// Writes a 3-D, 4-D or 5-D array as NIfTI-1 with `geometry` (both forms,
/// their codes, `pixdim`, `xyzt_units`), axes in order as `dim[1..]`: DIPY's
/// tensor map is `X × Y × Z × 1 × 6`, its eigenvectors `X × Y × Z × 3 × 3`.
///
/// The path must end in `.nii.gz` (compressed) or `.nii`. The file is
/// written under a temporary name beside it and renamed into place once
/// complete. Any array layout is accepted; the bytes go out in NIfTI's
/// order (first axis fastest), in the machine's byte order.
pub fn write_nifti<T, S, D>(
    path: impl AsRef<Path>,
    data: &ArrayBase<S, D>,
    geometry: &Geometry,
) -> Result<()>
where
    T: NiftiElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    let mut out = Output::create(path.as_ref(), data.shape(), T::DATATYPE, geometry)?;
    write_fortran(&mut out, data)?;
    out.finish()
}

/// Writes an image one 3-D volume at a time, in the memory of one volume
/// whatever the number of volumes: the header first, then each volume as it
/// is handed over, through gzip when the name ends in `.gz`. The file
/// appears under its name only when [`finish`](Self::finish) succeeds;
/// dropped before that (or after an error), it leaves nothing behind.
///
/// ```
/// use ember_image::nifti_io::{read_image, Geometry, VolumeWriter};
/// use ndarray::Array3;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("series.nii.gz");
/// let eye = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
/// let geometry = Geometry::from_affine(&eye, [1.0; 3]);
/// let mut w = VolumeWriter::<f32>::create(&path, &[4, 3, 2, 5], &geometry)?;
/// for t in 0..5 {
///     w.write_volume(&Array3::from_elem((4, 3, 2), t as f32))?;
/// }
/// w.finish()?;
/// assert_eq!(read_image(&path)?.data[[3, 2, 1, 4]], 4.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct VolumeWriter<T: NiftiElement> {
    out: Output,
    volume: [usize; 3],
    volumes: usize,
    written: usize,
    failed: bool,
    element: PhantomData<T>,
}

impl<T: NiftiElement> std::fmt::Debug for VolumeWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeWriter")
            .field("path", &self.out.path)
            .field("volume", &self.volume)
            .field("volumes", &self.volumes)
            .field("written", &self.written)
            .finish()
    }
}

impl<T: NiftiElement> VolumeWriter<T> {
    /// Starts `path` (ending in `.nii.gz` or `.nii`) for an image of
    /// `shape` (`dim[1..]`, 3 to 5 axes): it will take
    /// `shape[3] × shape[4]` volumes of `shape[0..3]`, in NIfTI order (the
    /// 4th axis fastest). The header is written now.
    pub fn create(path: impl AsRef<Path>, shape: &[usize], geometry: &Geometry) -> Result<Self> {
        let out = Output::create(path.as_ref(), shape, T::DATATYPE, geometry)?;
        Ok(VolumeWriter {
            out,
            volume: [shape[0], shape[1], shape[2]],
            volumes: shape[3..].iter().product(),
            written: 0,
            failed: false,
            element: PhantomData,
        })
    }

    /// Appends the next volume, which must have the shape given to
    /// [`create`](Self::create); any layout.
    pub fn write_volume<S: Data<Elem = T>>(&mut self, volume: &ArrayBase<S, Ix3>) -> Result<()> {
        let file = file_name(&self.out.path);
        let problem = if self.failed {
            Some("an earlier write failed".to_string())
        } else if self.written == self.volumes {
            Some(format!("all {} volumes are already written", self.volumes))
        } else if volume.shape() != self.volume {
            Some(format!(
                "volume {} has shape {:?}, not the image's {:?}",
                self.written,
                volume.shape(),
                self.volume
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ImageError::invalid(
                "VolumeWriter::write_volume",
                format!("{file}: {problem}"),
            ));
        }
        let result = write_fortran(&mut self.out, volume);
        self.failed = result.is_err();
        self.written += 1;
        result
    }

    /// Completes the file (gzip trailer, sync) and renames it into place;
    /// an error if fewer volumes than the shape promises were written.
    pub fn finish(self) -> Result<()> {
        if self.written < self.volumes {
            return Err(ImageError::invalid(
                "VolumeWriter::finish",
                format!(
                    "{}: {} of {} volumes written; the file was not created",
                    file_name(&self.out.path),
                    self.written,
                    self.volumes
                ),
            ));
        }
        self.out.finish()
    }
}

/// Writes `data`'s elements in NIfTI's order (first axis fastest). An
/// array already in that layout goes out as one slice; others are copied
/// a bounded chunk at a time.
fn write_fortran<T, S, D>(out: &mut Output, data: &ArrayBase<S, D>) -> Result<()>
where
    T: NiftiElement,
    S: Data<Elem = T>,
    D: Dimension,
{
    // The reversed axes of a column-major array are row-major.
    let reversed = data.t();
    if let Some(slice) = reversed.as_slice() {
        return out.write(bytemuck::cast_slice(slice));
    }
    let mut buf = Vec::with_capacity(IO_CHUNK_BYTES);
    for v in reversed.iter() {
        buf.extend_from_slice(bytemuck::bytes_of(v));
        if buf.len() >= IO_CHUNK_BYTES {
            out.write(&buf)?;
            buf.clear();
        }
    }
    out.write(&buf)
}

/// Where an output's bytes go: a temporary file beside the target, through
/// gzip when the target is a `.nii.gz`.
enum Sink {
    Plain(BufWriter<NamedTempFile>),
    Gz(GzEncoder<BufWriter<NamedTempFile>>),
}

/// A NIfTI file being written; renamed into place by [`Output::finish`],
/// deleted if dropped before.
struct Output {
    sink: Sink,
    path: PathBuf,
}

impl Output {
    /// Checks the name, shape and geometry, creates the temporary file and
    /// writes the header.
    fn create(path: &Path, shape: &[usize], datatype: Datatype, g: &Geometry) -> Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let gz = if name.ends_with(".nii.gz") {
            true
        } else if name.ends_with(".nii") {
            false
        } else {
            return Err(ImageError::invalid(
                "write",
                format!(
                    "{}: output name must end in .nii.gz or .nii",
                    file_name(path)
                ),
            ));
        };
        if !(3..=5).contains(&shape.len()) || shape.iter().any(|&s| s == 0 || s > i16::MAX as usize)
        {
            return Err(ImageError::invalid(
                "write",
                format!(
                    "{}: shape {shape:?} cannot be stored: 3 to 5 axes of 1 to {} voxels each",
                    file_name(path),
                    i16::MAX
                ),
            ));
        }
        if let Some((field, value, problem)) = g.check() {
            return Err(ImageError::invalid(
                "write",
                format!(
                    "{}: geometry field {field} = {value} {problem}",
                    file_name(path)
                ),
            ));
        }
        let header = header_bytes(shape, datatype, g);
        let tmp = atomic::temp_beside(path, &format!(".{name}."), ".tmp")?;
        let file = BufWriter::with_capacity(1 << 20, tmp);
        let sink = if gz {
            // Level 1: on noisy float data, higher levels shrink the file by
            // a few percent at several times the time.
            Sink::Gz(GzEncoder::new(file, Compression::fast()))
        } else {
            Sink::Plain(file)
        };
        let mut out = Output {
            sink,
            path: path.to_path_buf(),
        };
        out.write(&header)?;
        Ok(out)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gz(w) => w.write_all(bytes),
        }
        .map_err(|e| ImageError::io(&self.path, "cannot write", e))
    }

    /// Flushes (and ends the gzip stream), syncs and renames into place.
    fn finish(self) -> Result<()> {
        let path = self.path;
        let buffered = match self.sink {
            Sink::Plain(w) => w,
            Sink::Gz(w) => w
                .finish()
                .map_err(|e| ImageError::io(&path, "cannot write", e))?,
        };
        let tmp = buffered
            .into_inner()
            .map_err(|e| ImageError::io(&path, "cannot write", e.into_error()))?;
        atomic::commit(tmp, &path)
    }
}

/// The 348-byte NIfTI-1 header and the 4-byte "no extensions" flag, in the
/// machine's byte order (readers detect it from `dim[0]`), for voxel data
/// starting right after at offset 352 with no scaling.
fn header_bytes(shape: &[usize], datatype: Datatype, g: &Geometry) -> Vec<u8> {
    let mut b = vec![0u8; MIN_VOX_OFFSET as usize];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &(HEADER_BYTES as i32).to_ne_bytes());
    let mut dim = [1i16; 8];
    dim[0] = shape.len() as i16;
    for (d, &s) in dim[1..].iter_mut().zip(shape) {
        // Checked by the caller: 1 ..= i16::MAX.
        *d = s as i16;
    }
    for (i, d) in dim.iter().enumerate() {
        put(40 + 2 * i, &d.to_ne_bytes());
    }
    put(70, &datatype.code().to_ne_bytes());
    put(72, &(8 * datatype.size() as i16).to_ne_bytes());
    let v = g.voxel_size;
    let pixdim = [g.qfac, v[0], v[1], v[2], 1.0, 1.0, 1.0, 1.0];
    for (i, p) in pixdim.iter().enumerate() {
        put(76 + 4 * i, &(*p as f32).to_ne_bytes());
    }
    put(108, &(MIN_VOX_OFFSET as f32).to_ne_bytes());
    put(112, &1.0f32.to_ne_bytes());
    put(116, &0.0f32.to_ne_bytes());
    put(123, &[g.xyzt_units]);
    put(252, &g.qform_code.to_ne_bytes());
    put(254, &g.sform_code.to_ne_bytes());
    for (i, q) in g.quatern.iter().chain(&g.qoffset).enumerate() {
        put(256 + 4 * i, &(*q as f32).to_ne_bytes());
    }
    for (r, row) in g.srow.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(280 + 16 * r + 4 * c, &(*v as f32).to_ne_bytes());
        }
    }
    put(344, b"n+1\0");
    b
}
