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
//! Arrays come back in NIfTI's own memory order (x fastest, "Fortran"
//! layout); index them normally, and use `as_slice_memory_order` rather than
//! `as_slice` for raw access.
//!
//! Writing goes through the `nifti` crate into a temporary file in the target
//! folder, which is renamed into place only once complete.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::{
    Array3, Array4, ArrayBase, ArrayView3, ArrayView4, Data, Dimension, RemoveAxis, ShapeBuilder,
};
use nifti::{Endianness, NiftiHeader};

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

/// nibabel's tolerance for `1 - (b² + c² + d²)` slightly below 0 in a qform
/// quaternion (`-3 * float32 eps`).
const QUATERNION_THRESHOLD: f64 = -3.0 * f32::EPSILON as f64;

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
}

/// Parses and validates a NIfTI-1 header from the start of `reader`
/// (already decompressed). `file` only names the source in errors.
///
/// This is the entry point the fuzz target drives: it must return an error,
/// never panic, whatever the bytes.
pub fn parse_header<R: Read>(mut reader: R, file: &Path) -> Result<ImageHeader> {
    let mut raw = [0u8; HEADER_BYTES];
    match read_full(&mut reader, &mut raw) {
        Ok(n) if n == HEADER_BYTES => {}
        Ok(_) => {
            return Err(ImageError::TruncatedHeader {
                file: file_name(file),
            })
        }
        Err(e) => return Err(stream_error(file, e)),
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
                "describes more than 1 TiB of voxel data",
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

    let mut voxel_size = [1.0f64; 3];
    for (i, v) in voxel_size.iter_mut().enumerate().take(ndim.min(3)) {
        let p = f64::from(h.pixdim[i + 1]);
        if !p.is_finite() || p <= 0.0 {
            return Err(ImageError::field(
                file,
                format!("pixdim[{}]", i + 1),
                p,
                "is not a positive finite voxel size",
            ));
        }
        *v = p;
    }

    let affine = if h.sform_code > 0 {
        sform_affine(h, file)?
    } else if h.qform_code > 0 {
        qform_affine(h, voxel_size, file)?
    } else {
        base_affine(shape, voxel_size)
    };

    Ok(ImageHeader {
        shape,
        datatype,
        vox_offset,
        scl_slope,
        scl_inter,
        affine,
        voxel_size,
        big_endian: h.endianness == Endianness::Big,
    })
}

fn sform_affine(h: &NiftiHeader, file: &Path) -> Result<[[f64; 4]; 4]> {
    let rows = [
        ("srow_x", h.srow_x),
        ("srow_y", h.srow_y),
        ("srow_z", h.srow_z),
    ];
    let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
    for (r, (name, row)) in rows.iter().enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            return Err(ImageError::field(
                file,
                *name,
                format!("{row:?}"),
                "holds a non-finite value",
            ));
        }
        for c in 0..4 {
            a[r][c] = f64::from(row[c]);
        }
    }
    Ok(a)
}

/// nibabel's `get_qform`: rotation from the quaternion (w filled in as the
/// positive root), voxel sizes with `qfac` on z, offsets as translation.
fn qform_affine(h: &NiftiHeader, voxel_size: [f64; 3], file: &Path) -> Result<[[f64; 4]; 4]> {
    let (b, c, d) = (
        f64::from(h.quatern_b),
        f64::from(h.quatern_c),
        f64::from(h.quatern_d),
    );
    let offsets = [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from);
    if ![b, c, d].iter().chain(&offsets).all(|v| v.is_finite()) {
        return Err(ImageError::field(
            file,
            "quatern_b/c/d, qoffset_x/y/z",
            format!("{:?}", [b, c, d, offsets[0], offsets[1], offsets[2]]),
            "holds a non-finite value",
        ));
    }
    let w2 = 1.0 - (b * b + c * c + d * d);
    let w = if w2 >= 0.0 {
        w2.sqrt()
    } else if w2 >= QUATERNION_THRESHOLD {
        0.0
    } else {
        return Err(ImageError::field(
            file,
            "quatern_b/c/d",
            format!("{:?}", [b, c, d]),
            "is not part of a unit quaternion",
        ));
    };
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
    // nibabel silently treats a qfac other than -1 as 1.
    let qfac = if h.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
    let scale = [voxel_size[0], voxel_size[1], voxel_size[2] * qfac];
    let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
    for i in 0..3 {
        for j in 0..3 {
            a[i][j] = r[i][j] * scale[j];
        }
        a[i][3] = offsets[i];
    }
    Ok(a)
}

/// nibabel's fallback when neither form is set: x flipped, centred on the volume.
fn base_affine(shape: [usize; 4], voxel_size: [f64; 3]) -> [[f64; 4]; 4] {
    let zooms = [-voxel_size[0], voxel_size[1], voxel_size[2]];
    let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
    for i in 0..3 {
        a[i][i] = zooms[i];
        a[i][3] = -((shape[i] as f64 - 1.0) / 2.0) * zooms[i];
    }
    a
}

/// Reads into `buf` until it is full or the stream ends; returns how many
/// bytes arrived. Unlike `read_exact`, a short stream is not an error here,
/// so callers can tell "data too short" from "stream corrupt".
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Maps an error of the (possibly decompressing) stream to the crate's error.
/// Plain reads only fail for I/O reasons; the decoder's failures are gzip errors.
fn stream_error(file: &Path, e: io::Error) -> ImageError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            ImageError::Gzip {
                file: file_name(file),
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

/// An open NIfTI file positioned just after the header.
struct Opened {
    reader: Source,
    header: ImageHeader,
    /// Length on disk, which bounds the data of an uncompressed file.
    disk_len: u64,
}

impl Opened {
    fn is_gz(&self) -> bool {
        matches!(self.reader, Source::Gz(_))
    }
}

/// Opens `path`, telling gzip from plain by the first two bytes rather than
/// the name, and parses the header.
fn open(path: &Path) -> Result<Opened> {
    let mut file = File::open(path).map_err(|e| ImageError::io(path, "cannot open", e))?;
    let disk_len = file
        .metadata()
        .map_err(|e| ImageError::io(path, "cannot stat", e))?
        .len();
    let mut sniff = [0u8; 2];
    let n = read_full(&mut file, &mut sniff).map_err(|e| ImageError::io(path, "cannot read", e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ImageError::io(path, "cannot seek", e))?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    let mut reader = if n == 2 && sniff == [0x1f, 0x8b] {
        Source::Gz(MultiGzDecoder::new(buffered))
    } else {
        Source::Plain(buffered)
    };
    let header = parse_header(&mut reader, path)?;
    Ok(Opened {
        reader,
        header,
        disk_len,
    })
}

/// Reads and validates the header of a `.nii` / `.nii.gz` file.
pub fn read_header(path: impl AsRef<Path>) -> Result<ImageHeader> {
    Ok(open(path.as_ref())?.header)
}

/// Skips `n` bytes of the stream, failing if it ends first.
fn skip(
    reader: &mut dyn Read,
    n: u64,
    path: &Path,
    h: &ImageHeader,
    consumed_before: u64,
) -> Result<()> {
    let copied =
        io::copy(&mut reader.take(n), &mut io::sink()).map_err(|e| stream_error(path, e))?;
    if copied < n {
        return Err(truncated(path, h, consumed_before + copied));
    }
    Ok(())
}

/// The error for data ending early; `found_end` is the stream offset where it ended.
fn truncated(path: &Path, h: &ImageHeader, found_end: u64) -> ImageError {
    ImageError::TruncatedData {
        file: file_name(path),
        offset: h.vox_offset,
        expected: h.data_bytes(),
        found: found_end.saturating_sub(h.vox_offset),
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

/// Reads one volume's bytes from the stream and appends the decoded voxels.
fn read_volume_into<T: VoxelType>(
    o: &mut Opened,
    path: &Path,
    index: usize,
    raw: &mut Vec<u8>,
    out: &mut Vec<T>,
) -> Result<()> {
    let vb = o.header.volume_bytes() as usize;
    raw.resize(vb, 0);
    let n = read_full(&mut o.reader, raw).map_err(|e| stream_error(path, e))?;
    if n < vb {
        let end = o.header.vox_offset + index as u64 * vb as u64 + n as u64;
        return Err(truncated(path, &o.header, end));
    }
    decode(raw, &o.header, out);
    Ok(())
}

/// Reserves `n` f32s, reporting failure as an error rather than aborting.
fn reserve<T>(buf: &mut Vec<T>, n: usize, path: &Path) -> Result<()> {
    buf.try_reserve_exact(n)
        .map_err(|_| ImageError::field(path, "dim", n, "voxels do not fit in memory"))
}

/// For an uncompressed file, checks that the disk holds `end` bytes before
/// anything is allocated, so a lying header fails fast.
fn check_disk_len(o: &Opened, path: &Path, end: u64) -> Result<()> {
    if !o.is_gz() && o.disk_len < end {
        return Err(truncated(path, &o.header, o.disk_len));
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
pub fn read_array<T: VoxelType>(path: impl AsRef<Path>) -> Result<(Array4<T>, ImageHeader)> {
    let path = path.as_ref();
    let mut o = open(path)?;
    let h = o.header.clone();
    check_disk_len(&o, path, h.vox_offset + h.data_bytes())?;
    skip(
        &mut o.reader,
        h.vox_offset - HEADER_BYTES as u64,
        path,
        &h,
        HEADER_BYTES as u64,
    )?;
    let total = h.volume_len() * h.n_volumes();
    let mut data = Vec::new();
    reserve(&mut data, total, path)?;
    let mut raw = Vec::new();
    for t in 0..h.n_volumes() {
        read_volume_into(&mut o, path, t, &mut raw, &mut data)?;
    }
    if o.is_gz() {
        // Reading to the end makes the decoder verify the CRC and length trailer.
        io::copy(&mut o.reader, &mut io::sink()).map_err(|e| stream_error(path, e))?;
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
    check_disk_len(&o, path, start + h.volume_bytes())?;
    match &mut o.reader {
        Source::Plain(r) => {
            r.seek(SeekFrom::Start(start))
                .map_err(|e| ImageError::io(path, "cannot seek", e))?;
        }
        Source::Gz(r) => skip(
            r,
            start - HEADER_BYTES as u64,
            path,
            &h,
            HEADER_BYTES as u64,
        )?,
    }
    let mut out = Vec::new();
    reserve(&mut out, h.volume_len(), path)?;
    read_volume_into(&mut o, path, index, &mut Vec::new(), &mut out)?;
    volume_from_vec(h.shape, out, path)
}

fn volume_from_vec(shape: [usize; 4], data: Vec<f32>, path: &Path) -> Result<Volume> {
    Array3::from_shape_vec((shape[0], shape[1], shape[2]).f(), data)
        .map_err(|e| ImageError::field(path, "dim", format!("{shape:?}"), e.to_string()))
}

/// An iterator over the 3-D volumes of a NIfTI file, in order, decompressing
/// sequentially: only one volume's bytes and one decoded volume are held at
/// a time. After the first error it yields nothing more.
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
    check_disk_len(&opened, &path, h.vox_offset + h.data_bytes())?;
    skip(
        &mut opened.reader,
        h.vox_offset - HEADER_BYTES as u64,
        &path,
        &h,
        HEADER_BYTES as u64,
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
        let result = reserve(&mut out, self.opened.header.volume_len(), &self.path)
            .and_then(|()| {
                read_volume_into(&mut self.opened, &self.path, index, &mut self.raw, &mut out)
            })
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
pub trait NiftiElement: nifti::DataElement + bytemuck::Pod + sealed::Sealed {}
impl NiftiElement for u8 {}
impl NiftiElement for f32 {}
impl NiftiElement for f64 {}

/// Keeps [`NiftiElement`] and [`VoxelType`] to the types they were made for.
mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Writes a 3-D volume as NIfTI-1 with the given affine (stored as the sform,
/// code "aligned") and voxel sizes. The path must end in `.nii.gz` or `.nii`.
pub fn write_volume<T: NiftiElement>(
    path: impl AsRef<Path>,
    data: ArrayView3<'_, T>,
    affine: &[[f64; 4]; 4],
    voxel_size: [f64; 3],
) -> Result<()> {
    write_any(path.as_ref(), &data, affine, voxel_size)
}

/// Writes a 4-D image (`[x, y, z, t]`) as NIfTI-1; see [`write_volume`].
pub fn write_image4<T: NiftiElement>(
    path: impl AsRef<Path>,
    data: ArrayView4<'_, T>,
    affine: &[[f64; 4]; 4],
    voxel_size: [f64; 3],
) -> Result<()> {
    write_any(path.as_ref(), &data, affine, voxel_size)
}

fn write_any<T, S, D>(
    path: &Path,
    data: &ArrayBase<S, D>,
    affine: &[[f64; 4]; 4],
    voxel_size: [f64; 3],
) -> Result<()>
where
    T: NiftiElement,
    S: Data<Elem = T>,
    D: Dimension + RemoveAxis,
{
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = if name.ends_with(".nii.gz") {
        ".nii.gz"
    } else if name.ends_with(".nii") {
        ".nii"
    } else {
        return Err(ImageError::invalid(
            "write",
            format!(
                "{}: output name must end in .nii.gz or .nii",
                file_name(path)
            ),
        ));
    };
    if data
        .shape()
        .iter()
        .any(|&s| s == 0 || s > i16::MAX as usize)
    {
        return Err(ImageError::invalid(
            "write",
            format!(
                "{}: shape {:?} cannot be stored in NIfTI-1",
                file_name(path),
                data.shape()
            ),
        ));
    }
    if !voxel_size.iter().all(|v| v.is_finite() && *v > 0.0)
        || !affine.iter().flatten().all(|v| v.is_finite())
    {
        return Err(ImageError::invalid(
            "write",
            format!(
                "{}: voxel sizes {voxel_size:?} or affine are not finite and positive",
                file_name(path)
            ),
        ));
    }
    let reference = NiftiHeader {
        pixdim: [
            1.0,
            voxel_size[0] as f32,
            voxel_size[1] as f32,
            voxel_size[2] as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        sform_code: 2,
        qform_code: 0,
        srow_x: affine[0].map(|v| v as f32),
        srow_y: affine[1].map(|v| v as f32),
        srow_z: affine[2].map(|v| v as f32),
        // mm and seconds
        xyzt_units: 2 | 8,
        ..NiftiHeader::default()
    };
    // The nifti crate rewrites the extension of the path it is given, so
    // the temporary name must have no dot before `.nii` / `.nii.gz`.
    let tmp = atomic::temp_beside(path, &format!(".{}-", name.replace('.', "_")), suffix)?;
    nifti::writer::WriterOptions::new(tmp.path())
        .reference_header(&reference)
        .write_nifti(data)
        .map_err(|source| ImageError::NiftiWrite {
            file: file_name(path),
            source,
        })?;
    atomic::commit(tmp, path)
}
