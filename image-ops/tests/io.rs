//! NIfTI reading and writing: files built byte by byte here (independent of
//! the writer under test), round trips, and every bad-input error.

use std::io::Write;
use std::path::{Path, PathBuf};

use ember_image::nifti_io::{
    read_array, read_header, read_image, read_volume, volumes, write_image4, write_nifti,
    write_volume, Geometry, VolumeWriter,
};
use ember_image::ImageError;
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{Array, Array3, Array4, Axis, Dimension, IxDyn, ShapeBuilder};
use nifti::{IntoNdArray, NiftiObject};

/// The fields of a NIfTI-1 header a test wants to control.
#[derive(Clone)]
struct Hdr {
    dim: [i16; 8],
    datatype: i16,
    bitpix: i16,
    pixdim: [f32; 8],
    vox_offset: f32,
    scl_slope: f32,
    scl_inter: f32,
    qform_code: i16,
    sform_code: i16,
    quatern: [f32; 6],
    srow: [[f32; 4]; 3],
    xyzt_units: u8,
    magic: [u8; 4],
    sizeof_hdr: i32,
}

impl Hdr {
    fn new(shape: &[i16], datatype: i16, bitpix: i16) -> Self {
        let mut dim = [1i16; 8];
        dim[0] = shape.len() as i16;
        dim[1..=shape.len()].copy_from_slice(shape);
        Hdr {
            dim,
            datatype,
            bitpix,
            pixdim: [1.0, 2.0, 2.5, 3.0, 1.0, 1.0, 1.0, 1.0],
            vox_offset: 352.0,
            scl_slope: 0.0,
            scl_inter: 0.0,
            qform_code: 0,
            sform_code: 1,
            quatern: [0.0; 6],
            srow: [
                [2.0, 0.0, 0.0, -10.0],
                [0.0, 2.5, 0.0, 20.0],
                [0.0, 0.0, 3.0, 5.5],
            ],
            xyzt_units: 0,
            magic: *b"n+1\0",
            sizeof_hdr: 348,
        }
    }

    /// The 348 header bytes, the 4-byte extension flag, and padding up to
    /// `vox_offset`.
    fn bytes(&self, big_endian: bool) -> Vec<u8> {
        let mut b = vec![0u8; 348];
        macro_rules! put {
            ($at:expr, $v:expr) => {{
                let v = $v;
                let raw = if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[$at..$at + raw.len()].copy_from_slice(&raw);
            }};
        }
        put!(0, self.sizeof_hdr);
        for (i, &d) in self.dim.iter().enumerate() {
            put!(40 + 2 * i, d);
        }
        put!(70, self.datatype);
        put!(72, self.bitpix);
        for (i, &p) in self.pixdim.iter().enumerate() {
            put!(76 + 4 * i, p);
        }
        put!(108, self.vox_offset);
        put!(112, self.scl_slope);
        put!(116, self.scl_inter);
        b[123] = self.xyzt_units;
        put!(252, self.qform_code);
        put!(254, self.sform_code);
        for (i, &q) in self.quatern.iter().enumerate() {
            put!(256 + 4 * i, q);
        }
        for (r, row) in self.srow.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                put!(280 + 16 * r + 4 * c, v);
            }
        }
        b[344..348].copy_from_slice(&self.magic);
        // (offsets past 1 MB are only used to test their refusal)
        let start = if self.vox_offset.is_finite() && self.vox_offset < 1e6 {
            (self.vox_offset as usize).max(352)
        } else {
            352
        };
        b.resize(start, 0);
        b
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A float32 4-D image `[3, 4, 2, 5]` whose voxel `(x, y, z, t)` holds
/// `x + 10y + 100z + 1000t`, as header + data bytes.
fn f32_image(big_endian: bool) -> (Hdr, Vec<u8>) {
    let h = Hdr::new(&[3, 4, 2, 5], 16, 32);
    let mut bytes = h.bytes(big_endian);
    for t in 0..5 {
        for z in 0..2 {
            for y in 0..4 {
                for x in 0..3 {
                    let v = (x + 10 * y + 100 * z + 1000 * t) as f32;
                    bytes.extend(if big_endian {
                        v.to_be_bytes()
                    } else {
                        v.to_le_bytes()
                    });
                }
            }
        }
    }
    (h, bytes)
}

fn expected_value(x: usize, y: usize, z: usize, t: usize) -> f32 {
    (x + 10 * y + 100 * z + 1000 * t) as f32
}

fn message(e: ImageError) -> String {
    e.to_string()
}

#[test]
fn reads_nii_and_nii_gz_with_sform_and_voxel_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = f32_image(false);
    for path in [
        put(dir.path(), "a.nii", &bytes),
        put(dir.path(), "a.nii.gz", &gzip(&bytes)),
    ] {
        let img = read_image(&path).unwrap();
        assert_eq!(img.data.dim(), (3, 4, 2, 5));
        for ((x, y, z, t), &v) in img.data.indexed_iter() {
            assert_eq!(v, expected_value(x, y, z, t));
        }
        assert_eq!(img.voxel_size, [2.0, 2.5, 3.0]);
        assert_eq!(img.affine[0], [2.0, 0.0, 0.0, -10.0]);
        assert_eq!(img.affine[2], [0.0, 0.0, 3.0, 5.5]);
        assert_eq!(img.affine[3], [0.0, 0.0, 0.0, 1.0]);
    }
}

#[test]
fn reads_big_endian_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = f32_image(true);
    let img = read_image(put(dir.path(), "be.nii", &bytes)).unwrap();
    assert_eq!(img.data[[2, 3, 1, 4]], expected_value(2, 3, 1, 4));
    assert_eq!(img.voxel_size, [2.0, 2.5, 3.0]);
}

#[test]
fn every_datatype_is_scaled_like_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let raw: [f64; 4] = [0.0, 1.0, 7.0, 100.0];
    type Encode = fn(f64) -> Vec<u8>;
    let cases: [(i16, i16, Encode); 6] = [
        (2, 8, |v| vec![v as u8]),
        (4, 16, |v| (v as i16).to_le_bytes().to_vec()),
        (512, 16, |v| (v as u16).to_le_bytes().to_vec()),
        (8, 32, |v| (v as i32).to_le_bytes().to_vec()),
        (16, 32, |v| (v as f32).to_le_bytes().to_vec()),
        (64, 64, |v| v.to_le_bytes().to_vec()),
    ];
    for (code, bits, encode) in cases {
        for (slope, inter, scaled) in [
            (2.5f32, -1.0f32, true),
            (0.0, 7.0, false),
            (f32::NAN, 7.0, false),
        ] {
            let mut h = Hdr::new(&[2, 2, 1], code, bits);
            h.scl_slope = slope;
            h.scl_inter = inter;
            let mut bytes = h.bytes(false);
            for &v in &raw {
                bytes.extend(encode(v));
            }
            let img = read_image(put(dir.path(), "t.nii", &bytes)).unwrap();
            let got = img.data.as_slice_memory_order().unwrap().to_vec();
            let want: Vec<f32> = raw
                .iter()
                .map(|&v| {
                    if scaled {
                        (v * 2.5 - 1.0) as f32
                    } else {
                        v as f32
                    }
                })
                .collect();
            assert_eq!(got, want, "datatype {code} slope {slope}");
        }
    }
}

#[test]
fn float64_files_read_exactly_as_f64() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hdr::new(&[2, 1, 1], 64, 64);
    let mut bytes = h.bytes(false);
    let values = [0.1f64, 1.0 + f64::EPSILON];
    for v in values {
        bytes.extend(v.to_le_bytes());
    }
    let (a, header) = read_array::<f64>(put(dir.path(), "d.nii", &bytes)).unwrap();
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), values);
    assert_eq!(header.shape, [2, 1, 1, 1]);
}

#[test]
fn qform_is_used_when_sform_is_unset_and_base_affine_when_neither() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Hdr::new(&[2, 2, 2], 2, 8);
    h.sform_code = 0;
    h.qform_code = 1;
    // 90° about z: (b, c, d) = (0, 0, sin 45°); qfac -1 flips z
    let s = std::f32::consts::FRAC_1_SQRT_2;
    h.quatern = [0.0, 0.0, s, 1.0, 2.0, 3.0];
    h.pixdim[0] = -1.0;
    let mut bytes = h.bytes(false);
    bytes.extend([0u8; 8]);
    let a = read_header(put(dir.path(), "q.nii", &bytes))
        .unwrap()
        .affine;
    let want = [
        [0.0, -2.5, 0.0, 1.0],
        [2.0, 0.0, 0.0, 2.0],
        [0.0, 0.0, -3.0, 3.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    for (r, w) in a.iter().zip(&want) {
        for (g, w) in r.iter().zip(w) {
            assert!((g - w).abs() < 1e-6, "{a:?}");
        }
    }

    h.qform_code = 0;
    let mut bytes = h.bytes(false);
    bytes.extend([0u8; 8]);
    let a = read_header(put(dir.path(), "b.nii", &bytes))
        .unwrap()
        .affine;
    // nibabel: x flipped, origin at the centre of the 2×2×2 grid
    assert_eq!(a[0], [-2.0, 0.0, 0.0, 1.0]);
    assert_eq!(a[1], [0.0, 2.5, 0.0, -1.25]);
    assert_eq!(a[2], [0.0, 0.0, 3.0, -1.5]);
}

#[test]
fn one_volume_reads_equal_the_whole_image() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = f32_image(false);
    for path in [
        put(dir.path(), "a.nii", &bytes),
        put(dir.path(), "a.nii.gz", &gzip(&bytes)),
    ] {
        let whole = read_image(&path).unwrap();
        for t in 0..5 {
            assert_eq!(
                read_volume(&path, t).unwrap(),
                whole.data.index_axis(Axis(3), t)
            );
        }
        let streamed: Vec<Array3<f32>> = volumes(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(streamed.len(), 5);
        for (t, v) in streamed.iter().enumerate() {
            assert_eq!(v, &whole.data.index_axis(Axis(3), t));
        }
    }
}

#[test]
fn round_trips_f32_f64_and_u8_with_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let affine = [
        [-1.25, 0.0, 0.0, 90.0],
        [0.0, 1.25, 0.0, -126.0],
        [0.0, 0.0, 1.25, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let voxel = [1.25, 1.25, 1.25];

    let img = Array4::from_shape_fn((4, 3, 2, 3), |(x, y, z, t)| {
        x as f32 * 0.5 - y as f32 + z as f32 * 1e-3 + t as f32
    });
    let p = dir.path().join("img.nii.gz");
    write_image4(&p, img.view(), &affine, voxel).unwrap();
    let back = read_image(&p).unwrap();
    assert_eq!(back.data, img);
    assert_eq!(back.affine, affine);
    assert_eq!(back.voxel_size, voxel);

    // a transposed (non-standard-layout) view writes in NIfTI order too
    let f = Array3::from_shape_fn((3, 4, 5).f(), |(x, y, z)| {
        (x * 100 + y * 10 + z) as f64 / 3.0
    });
    let p = dir.path().join("f.nii");
    write_volume(&p, f.view(), &affine, voxel).unwrap();
    let (back, h) = read_array::<f64>(&p).unwrap();
    assert_eq!(back.index_axis(Axis(3), 0), f);
    assert_eq!(h.shape, [3, 4, 5, 1]);

    let m = Array3::from_shape_fn((2, 2, 2), |(x, y, z)| u8::from((x + y + z) % 2 == 0));
    let p = dir.path().join("mask.nii.gz");
    write_volume(&p, m.view(), &affine, voxel).unwrap();
    let back = read_image(&p).unwrap();
    assert_eq!(back.data.index_axis(Axis(3), 0), m.mapv(f32::from));

    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "temporary files left behind: {names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o644,
            "outputs are readable by others, as a plain create would be"
        );
    }
}

#[test]
fn writing_to_a_missing_folder_or_odd_name_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let v = Array3::<f32>::zeros((2, 2, 2));
    let eye = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let e = message(
        write_volume(
            dir.path().join("no/such/out.nii.gz"),
            v.view(),
            &eye,
            [1.0; 3],
        )
        .unwrap_err(),
    );
    assert!(e.contains("out.nii.gz"), "{e}");
    let e =
        message(write_volume(dir.path().join("out.png"), v.view(), &eye, [1.0; 3]).unwrap_err());
    assert!(e.contains("must end in .nii.gz or .nii"), "{e}");
    let e = message(
        write_volume(dir.path().join("out.nii"), v.view(), &eye, [1.0, -1.0, 1.0]).unwrap_err(),
    );
    assert!(
        e.contains("geometry field pixdim[2] = -1 is not a positive finite voxel size"),
        "{e}"
    );
}

// ---- bad input: every error names the file and the field ----

fn bad(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = put(dir.path(), name, bytes);
    let e = message(read_image(&p).unwrap_err());
    assert!(e.contains(name), "message does not name the file: {e}");
    e
}

fn with_data(h: &Hdr, data_bytes: usize) -> Vec<u8> {
    let mut b = h.bytes(false);
    b.resize(b.len() + data_bytes, 0);
    b
}

#[test]
fn negative_dimension_is_named() {
    let mut h = Hdr::new(&[2, 2, 2, 1], 16, 32);
    h.dim[4] = -3;
    let e = bad("data.nii.gz", &gzip(&with_data(&h, 32)));
    assert!(
        e.ends_with("data.nii.gz: header field dim[4] = -3 is not a valid dimension"),
        "{e}"
    );
}

#[test]
fn nonsense_dimensionality_and_extra_dimensions_are_named() {
    let mut h = Hdr::new(&[2, 2, 2], 16, 32);
    h.dim[0] = 0;
    assert!(bad("d0.nii", &with_data(&h, 32)).contains("header field dim[0] = 0"));
    let mut h = Hdr::new(&[2, 2, 2, 2, 3], 16, 32);
    h.dim[0] = 5;
    assert!(bad("d5.nii", &with_data(&h, 96)).contains("header field dim[5] = 3 is not 1"));
}

#[test]
fn absurd_size_is_refused_before_allocating() {
    let h = Hdr::new(&[32767, 32767, 32767, 32767], 64, 64);
    let e = bad("huge.nii", &with_data(&h, 0));
    assert!(
        e.contains("header field dim = ") && e.contains("more than 1 TiB"),
        "{e}"
    );
}

#[test]
fn bad_voxel_sizes_are_named() {
    for (i, v) in [(1, f32::NAN), (2, -1.0), (3, f32::INFINITY), (1, 0.0)] {
        let mut h = Hdr::new(&[2, 2, 2], 16, 32);
        h.pixdim[i] = v;
        let e = bad("px.nii", &with_data(&h, 32));
        assert!(e.contains(&format!("header field pixdim[{i}] = ")), "{e}");
        assert!(e.contains("is not a positive finite voxel size"), "{e}");
    }
}

#[test]
fn wrong_magic_and_header_pairs_are_named() {
    let mut h = Hdr::new(&[2, 2, 2], 16, 32);
    h.magic = *b"abcd";
    assert!(bad("m.nii", &with_data(&h, 32)).contains("header field magic = \"abcd\""));
    h.magic = *b"ni1\0";
    assert!(bad("m.nii", &with_data(&h, 32)).contains(".hdr/.img pair"));
    let mut h = Hdr::new(&[2, 2, 2], 16, 32);
    h.sizeof_hdr = 540;
    assert!(bad("n2.nii", &with_data(&h, 32)).contains("header field sizeof_hdr = 540"));
}

#[test]
fn unsupported_datatype_and_bad_intercept_are_named() {
    let h = Hdr::new(&[2, 2, 2], 128, 24);
    assert!(bad("rgb.nii", &with_data(&h, 24)).contains("header field datatype = 128"));
    let mut h = Hdr::new(&[2, 2, 2], 16, 32);
    h.scl_slope = 2.0;
    h.scl_inter = f32::NAN;
    assert!(bad("s.nii", &with_data(&h, 32)).contains("header field scl_inter = NaN"));
    let mut h = Hdr::new(&[2, 2, 2], 16, 32);
    h.vox_offset = f32::INFINITY;
    assert!(bad("o.nii", &with_data(&h, 32)).contains("header field vox_offset = inf"));
}

#[test]
fn short_data_is_reported_with_sizes() {
    let h = Hdr::new(&[2, 2, 2], 16, 32);
    let e = bad("short.nii", &with_data(&h, 20));
    assert!(
        e.contains("promise 32 data bytes from offset 352, but the data ends after 20"),
        "{e}"
    );
    let e = bad("short.nii.gz", &gzip(&with_data(&h, 20)));
    assert!(e.contains("promise 32 data bytes"), "{e}");
    // a .nii shorter than its header says is refused as soon as it is
    // opened, whichever volume is asked for, naming the first short volume
    let h = Hdr::new(&[2, 2, 2, 3], 16, 32);
    let dir = tempfile::tempdir().unwrap();
    let p = put(dir.path(), "v.nii", &with_data(&h, 64));
    for e in [
        read_header(&p).unwrap_err(),
        read_volume(&p, 0).unwrap_err(),
        read_volume(&p, 2).unwrap_err(),
        volumes(&p).unwrap_err(),
    ] {
        let e = message(e);
        assert!(
            e.contains(
                "promise 96 data bytes from offset 352, but the data ends after 64, \
                 inside volume 2 (counting from 0) of 3"
            ),
            "{e}"
        );
    }
    let p = put(dir.path(), "w.nii", &with_data(&h, 96));
    assert!(message(read_volume(&p, 3).unwrap_err())
        .contains("volume 3 requested but header field dim[4] = 3"));
}

#[test]
fn truncated_header_and_truncated_or_corrupt_gzip_are_errors() {
    let (_, bytes) = f32_image(false);
    assert!(bad("h.nii", &bytes[..100]).contains("ends inside the 348-byte NIfTI-1 header"));
    let gz = gzip(&bytes);
    let e = bad("cut.nii.gz", &gz[..gz.len() / 2]);
    assert!(e.contains("gzip stream is corrupt or truncated"), "{e}");
    // all voxel data present, only the CRC/length trailer missing
    let e = bad("trailer.nii.gz", &gz[..gz.len() - 4]);
    assert!(e.contains("gzip stream is corrupt or truncated"), "{e}");
    let mut corrupt = gz.clone();
    for b in corrupt.iter_mut().skip(20).take(40) {
        *b ^= 0x5a;
    }
    let e = bad("bad.nii.gz", &corrupt);
    assert!(e.contains("gzip") || e.contains("header field"), "{e}");
}

#[test]
fn streaming_stops_after_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = f32_image(false);
    // keep the first two volumes and half of the third
    let keep = 352 + 24 * 4 * 2 + 24 * 2;
    let p = put(dir.path(), "part.nii.gz", &gzip(&bytes[..keep]));
    let results: Vec<_> = volumes(&p).unwrap().collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[1].is_ok());
    let e = results[2].as_ref().unwrap_err().to_string();
    assert!(
        e.contains("part.nii.gz") && e.contains("promise 480 data bytes"),
        "{e}"
    );
}

#[test]
fn missing_file_is_named() {
    let e = message(read_image("/nonexistent/dir/x.nii.gz").unwrap_err());
    assert!(
        e.starts_with("/nonexistent/dir/x.nii.gz: cannot open"),
        "{e}"
    );
}

#[test]
fn dipy_small_64d_input_reads_as_int16_shape() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/small_64D/input.nii.gz");
    let h = read_header(&p).unwrap();
    assert_eq!(h.shape, [10, 10, 10, 65]);
    assert_eq!(h.datatype, ember_image::nifti_io::Datatype::I16);
    assert_eq!(volumes(&p).unwrap().count(), 65);
}

// ---- headers that lie: refused before allocating what they claim ----

/// 512×512×1024×20 float32: 20 GiB of voxel data.
const HUGE: [i16; 4] = [512, 512, 1024, 20];

/// Every entry point that opens a file, each giving its error.
fn every_reader(p: &Path) -> Vec<String> {
    vec![
        message(read_header(p).unwrap_err()),
        message(read_image(p).unwrap_err()),
        message(read_volume(p, 0).unwrap_err()),
        message(volumes(p).unwrap_err()),
    ]
}

#[test]
fn a_lying_nii_is_refused_with_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hdr::new(&HUGE, 16, 32);
    let p = put(dir.path(), "lie.nii", &with_data(&h, 100));
    for e in every_reader(&p) {
        assert!(
            e.contains(
                "lie.nii: header fields dim/datatype/vox_offset promise 21474836480 data bytes \
                 from offset 352, but the data ends after 100, inside volume 0"
            ),
            "{e}"
        );
    }
}

#[test]
fn a_tiny_nii_gz_claiming_gigabytes_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hdr::new(&HUGE, 16, 32);
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(&h.bytes(false)).unwrap();
    let gz = e.finish().unwrap();
    assert!(gz.len() < 200, "{} bytes", gz.len());
    let p = put(dir.path(), "lie.nii.gz", &gz);
    let started = std::time::Instant::now();
    for e in every_reader(&p) {
        let want = format!(
            "lie.nii.gz: header fields dim[1..=4] = [512, 512, 1024, 20], datatype = 16 \
             (4 bytes per voxel), vox_offset = 352 declare 21474836832 bytes of header and \
             voxel data, but a gzip file of {} bytes decompresses to at most {} bytes",
            gz.len(),
            gz.len() * 1032
        );
        assert!(e.contains(&want), "{e}\nwanted: {want}");
    }
    // Allocating (let alone zeroing) 20 GiB four times would take far longer.
    assert!(
        started.elapsed().as_secs_f64() < 2.0,
        "{:?}",
        started.elapsed()
    );
}

/// `n` bytes no compressor can shrink (xorshift).
fn noise_bytes(n: usize, mut state: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// Environment variable marking the child process of the peak-memory test.
const MEMORY_CHILD: &str = "EMBER_IO_MEMORY_CHILD";

/// Run only as a child of `lying_files_cost_little_memory` (it is ignored
/// otherwise): reads lying files through every entry point and prints this
/// process's peak resident memory.
#[test]
#[ignore = "run by lying_files_cost_little_memory in a child process"]
fn memory_child_reads_lying_files() {
    if std::env::var_os(MEMORY_CHILD).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // A tiny file claiming 20 GiB: refused by the size check.
    let gz = gzip(&Hdr::new(&HUGE, 16, 32).bytes(false));
    let p = put(dir.path(), "tiny.nii.gz", &gz);
    assert_eq!(every_reader(&p).len(), 4);

    // A plausible file: 2.2 MB of incompressible gzip may hold the 2 GiB
    // its header claims (two 1 GiB volumes), so only reading finds out.
    let h = Hdr::new(&[1024, 1024, 256, 2], 16, 32);
    let mut bytes = h.bytes(false);
    bytes.extend(noise_bytes(2_200_000, 0x9e37_79b9_7f4a_7c15));
    let mut e = GzEncoder::new(Vec::new(), Compression::none());
    e.write_all(&bytes).unwrap();
    let gz = e.finish().unwrap();
    drop(bytes);
    let p = put(dir.path(), "plausible.nii.gz", &gz);
    drop(gz);
    assert!(read_header(&p).is_ok());
    let short = "promise 2147483648 data bytes from offset 352, but the data ends after \
                 2200000, inside volume 0 (counting from 0) of 2";
    let mut stream = volumes(&p).unwrap();
    for e in [
        read_image(&p).unwrap_err(),
        read_volume(&p, 1).unwrap_err(),
        read_volume(&p, 0).unwrap_err(),
        stream.next().unwrap().unwrap_err(),
    ] {
        let e = message(e);
        assert!(e.contains("plausible.nii.gz") && e.contains(short), "{e}");
    }
    assert!(stream.next().is_none());

    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB");
    println!("VmHWM_KIB={hwm}");
}

#[test]
fn lying_files_cost_little_memory() {
    // A child process, so that the peak is this work's alone.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_child_reads_lying_files",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: u64 = stdout
        .lines()
        .find_map(|l| l.split("VmHWM_KIB=").nth(1))
        .unwrap_or_else(|| panic!("no VmHWM in:\n{stdout}"))
        .parse()
        .unwrap();
    eprintln!("peak resident memory of the child: {kib} KiB");
    assert!(kib < 64 * 1024, "peak {kib} KiB");
}

/// A float32 image of `t` volumes of 64×32×32 (256 KiB each) whose voxels
/// are their own linear index, as a `.nii`'s bytes.
fn big_volumes(t: i16) -> Vec<u8> {
    let h = Hdr::new(&[64, 32, 32, t], 16, 32);
    let mut bytes = h.bytes(false);
    for i in 0..64 * 32 * 32 * t as usize {
        bytes.extend((i as f32).to_le_bytes());
    }
    bytes
}

#[test]
fn a_gzip_stream_of_data_cut_in_volume_3_names_volume_3() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = big_volumes(6);
    let vb = 64 * 32 * 32 * 4;
    // a complete gzip stream whose data stops half way through volume 3
    let p = put(
        dir.path(),
        "short.nii.gz",
        &gzip(&bytes[..352 + 3 * vb + vb / 2]),
    );
    let want = format!(
        "short.nii.gz: header fields dim/datatype/vox_offset promise {} data bytes from \
         offset 352, but the data ends after {}, inside volume 3 (counting from 0) of 6",
        6 * vb,
        3 * vb + vb / 2
    );
    let streamed: Vec<_> = volumes(&p).unwrap().collect();
    assert_eq!(streamed.len(), 4, "the stream stops after the first error");
    assert!(streamed[..3].iter().all(|v| v.is_ok()));
    for e in [
        streamed[3].as_ref().unwrap_err().to_string(),
        message(read_image(&p).unwrap_err()),
        message(read_volume(&p, 3).unwrap_err()),
        message(read_volume(&p, 5).unwrap_err()),
    ] {
        assert!(e.contains(&want), "{e}\nwanted: {want}");
    }
    assert!(read_volume(&p, 2).is_ok());
}

#[test]
fn a_gz_file_cut_in_volume_3_names_volume_3() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = big_volumes(6);
    let vb = 64 * 32 * 32 * 4;
    // Stored blocks: the cut lands where the data does, half a volume (far
    // more than the decoder buffers) into volume 3.
    let mut e = GzEncoder::new(Vec::new(), Compression::none());
    e.write_all(&bytes).unwrap();
    let gz = e.finish().unwrap();
    let p = put(dir.path(), "cut.nii.gz", &gz[..10 + 352 + 3 * vb + vb / 2]);
    let streamed: Vec<_> = volumes(&p).unwrap().collect();
    assert_eq!(streamed.len(), 4);
    for e in [
        streamed[3].as_ref().unwrap_err().to_string(),
        message(read_image(&p).unwrap_err()),
        message(read_volume(&p, 3).unwrap_err()),
        message(read_volume(&p, 5).unwrap_err()),
    ] {
        assert!(
            e.starts_with(&format!(
                "{}: gzip stream is corrupt or truncated after ",
                p.display()
            )) && e.contains("inside volume 3 (counting from 0) of 6"),
            "{e}"
        );
    }
}

#[test]
fn absurd_header_fields_are_named() {
    let cases: Vec<(Hdr, &str)> = vec![
        ({
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.dim[3] = 0;
            h
        }, "header field dim[3] = 0 is not a valid dimension"),
        ({
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.dim[3] = i16::MIN;
            h
        }, "header field dim[3] = -32768 is not a valid dimension"),
        (
            Hdr::new(&[32767, 32767, 32767, 2], 2, 8),
            "header field dim = [4, 32767, 32767, 32767, 2] describes more than 1 TiB",
        ),
        (
            Hdr::new(&[2, 2, 2], 16, 16),
            "header field bitpix = 16 disagrees with datatype 16 (32 bits per voxel)",
        ),
        ({
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.vox_offset = -4.0;
            h
        }, "header field vox_offset = -4 is not a usable byte offset"),
        ({
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.vox_offset = 3e12;
            h
        }, "header field vox_offset = 3000000000000 is not a usable byte offset"),
        ({
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.pixdim[3] = -0.0;
            h
        }, "header field pixdim[3] = -0 is not a positive finite voxel size"),
        ({
            // the sform is in use, but a qform that says it is set must be
            // usable too: outputs write it back
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.qform_code = 1;
            h.quatern = [0.9, 0.9, 0.0, 0.0, 0.0, 0.0];
            h
        }, "header field quatern_b/c/d = [0.8999999761581421, 0.8999999761581421, 0.0] is not part of a unit quaternion"),
        ({
            let mut h = Hdr::new(&[2, 2, 2], 16, 32);
            h.srow[1][3] = f32::NAN;
            h
        }, "header field srow_y = [0.0, 2.5, 0.0, NaN] holds a non-finite value"),
    ];
    for (h, want) in cases {
        for (name, bytes) in [
            ("a.nii", with_data(&h, 32)),
            ("a.nii.gz", gzip(&with_data(&h, 32))),
        ] {
            let e = bad(name, &bytes);
            assert!(e.contains(want), "{e}\nwanted: {want}");
        }
    }
}

/// A deterministic xorshift generator for the header fuzzing below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Garbles a valid file's header thousands of times: every reader returns
/// `Ok` or `Err`, never panics, and what it accepts is consistent.
#[test]
fn garbled_headers_never_panic() {
    // The fields the reader interprets, where garbling matters most.
    const FIELDS: [(usize, usize); 12] = [
        (0, 4),    // sizeof_hdr
        (40, 16),  // dim
        (70, 2),   // datatype
        (72, 2),   // bitpix
        (76, 32),  // pixdim
        (108, 4),  // vox_offset
        (112, 8),  // scl_slope, scl_inter
        (123, 1),  // xyzt_units
        (252, 4),  // qform_code, sform_code
        (256, 24), // quatern, qoffset
        (280, 48), // srow
        (344, 4),  // magic
    ];
    const SPECIAL: [[u8; 4]; 8] = [
        [0, 0, 0, 0],
        [0xff, 0xff, 0xff, 0xff],
        [0xff, 0x7f, 0, 0],
        [0, 0x80, 0, 0],
        [0, 0, 0xc0, 0x7f],       // NaN
        [0, 0, 0x80, 0x7f],       // inf
        [0xff, 0xff, 0x7f, 0x7f], // f32::MAX
        [1, 0, 0, 0],
    ];
    let dir = tempfile::tempdir().unwrap();
    let (_, valid) = f32_image(false);
    let (_, valid_be) = f32_image(true);
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut accepted = 0;
    for round in 0..3000 {
        let mut bytes = if round % 2 == 0 {
            valid.clone()
        } else {
            valid_be.clone()
        };
        for _ in 0..1 + rng.below(4) {
            let (at, len) = if rng.below(4) == 0 {
                (rng.below(348), 1)
            } else {
                FIELDS[rng.below(FIELDS.len())]
            };
            let pos = at + rng.below(len);
            match rng.below(3) {
                0 => bytes[pos] = rng.next() as u8,
                1 => bytes[pos] ^= 1 << rng.below(8),
                _ => {
                    let s = SPECIAL[rng.below(SPECIAL.len())];
                    let start = (at + 2 * rng.below(len.div_ceil(2))).min(348 - 4);
                    bytes[start..start + 4].copy_from_slice(&s);
                }
            }
        }
        if rng.below(8) == 0 {
            // truncated data too
            let keep = 300 + rng.below(bytes.len() - 300);
            bytes.truncate(keep);
        }
        let gz = round % 3 == 0;
        let (name, content) = if gz {
            ("f.nii.gz", gzip(&bytes))
        } else {
            ("f.nii", bytes.clone())
        };
        let p = put(dir.path(), name, &content);
        let outcome = std::panic::catch_unwind(|| {
            let accepted = accepted;
            let header = read_header(&p);
            let image = read_image(&p);
            let first = read_volume(&p, 0);
            let streamed: Vec<_> = volumes(&p).into_iter().flatten().collect();
            if let (Ok(h), Ok(img)) = (&header, &image) {
                assert_eq!(img.data.shape(), h.shape);
                assert_eq!(first.as_ref().unwrap(), &img.data.index_axis(Axis(3), 0));
                assert_eq!(streamed.len(), h.shape[3]);
                // What the reader accepted writes back and reads back alike
                // (for a few rounds only: each write syncs, which can be slow).
                if accepted < 4 {
                    let out = dir.path().join("back.nii");
                    write_nifti(&out, &img.data, &h.geometry()).unwrap();
                    assert_eq!(read_header(&out).unwrap().geometry(), h.geometry());
                }
                return true;
            }
            false
        });
        match outcome {
            Ok(ok) => accepted += usize::from(ok),
            Err(_) => panic!(
                "round {round}: a reader panicked on header bytes {:?}",
                &bytes[..352.min(bytes.len())]
            ),
        }
    }
    // Some garbling leaves unread fields or equivalent values: those files
    // must still be accepted, or the readers would just refuse everything.
    assert!(accepted > 100, "only {accepted} of 3000 accepted");
}

// ---- geometry kept from input to output ----

#[test]
fn geometry_round_trips_through_read_write_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Hdr::new(&[3, 4, 2, 5], 16, 32);
    h.qform_code = 1;
    h.sform_code = 4;
    // 90° about z, qfac -1
    let s = std::f32::consts::FRAC_1_SQRT_2;
    h.quatern = [0.0, 0.0, s, 1.5, -2.0, 3.25];
    h.pixdim[0] = -1.0;
    h.xyzt_units = 2 | 16; // mm and ms
    let (_, data) = f32_image(false);
    let mut bytes = h.bytes(false);
    bytes.extend_from_slice(&data[352..]);
    let input = put(dir.path(), "in.nii.gz", &gzip(&bytes));

    let header = read_header(&input).unwrap();
    let g = header.geometry();
    assert_eq!(
        g,
        Geometry {
            sform_code: 4,
            srow: [
                [2.0, 0.0, 0.0, -10.0],
                [0.0, 2.5, 0.0, 20.0],
                [0.0, 0.0, 3.0, 5.5]
            ],
            qform_code: 1,
            quatern: [0.0, 0.0, f64::from(s)],
            qoffset: [1.5, -2.0, 3.25],
            qfac: -1.0,
            voxel_size: [2.0, 2.5, 3.0],
            xyzt_units: 18,
        }
    );
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(serde_json::from_str::<Geometry>(&json).unwrap(), g);

    let image = read_image(&input).unwrap();
    let fa = image.data.index_axis(Axis(3), 0).to_owned();
    for (name, data) in [
        ("fa.nii.gz", fa.into_dyn()),
        ("all.nii", image.data.clone().into_dyn()),
    ] {
        let out = dir.path().join(name);
        write_nifti(&out, &data, &g).unwrap();
        let back = read_header(&out).unwrap();
        assert_eq!(back.geometry(), g, "{name}");
        assert_eq!(back.affine, header.affine, "{name}");
        // the fields as an independent parser sees them
        let raw = nifti::ReaderOptions::new().read_file(&out).unwrap();
        let hdr = raw.header();
        assert_eq!((hdr.qform_code, hdr.sform_code, hdr.xyzt_units), (1, 4, 18));
        assert_eq!(hdr.pixdim[..4], [-1.0, 2.0, 2.5, 3.0]);
        assert_eq!(
            [hdr.quatern_d, hdr.quatern_x, hdr.quatern_z],
            [s, 1.5, 3.25]
        );
        assert_eq!(hdr.srow_y, [0.0, 2.5, 0.0, 20.0]);
    }
    let back = read_image(dir.path().join("all.nii")).unwrap();
    assert_eq!(back.data, image.data);
}

#[test]
fn the_affine_only_geometry_is_the_old_writers_header() {
    let affine = [
        [-1.25, 0.0, 0.0, 90.0],
        [0.0, 1.25, 0.0, -126.0],
        [0.0, 0.0, 1.25, -72.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.nii");
    write_volume(
        &p,
        Array3::<u8>::zeros((2, 3, 4)).view(),
        &affine,
        [1.25; 3],
    )
    .unwrap();
    let raw = nifti::ReaderOptions::new().read_file(&p).unwrap();
    let h = raw.header();
    assert_eq!((h.sform_code, h.qform_code, h.xyzt_units), (2, 0, 2 | 8));
    assert_eq!((h.datatype, h.bitpix, h.vox_offset), (2, 8, 352.0));
    assert_eq!(
        read_header(&p).unwrap().geometry(),
        Geometry::from_affine(&affine, [1.25; 3])
    );
}

#[test]
fn five_d_arrays_write_with_their_dims_in_nifti_order() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::from_affine(
        &[
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        [2.0; 3],
    );
    let value = |i: &[usize]| (i[0] + 10 * i[1] + 100 * i[2] + 1000 * i[3] + 10000 * i[4]) as f32;
    // DIPY's tensor map (X × Y × Z × 1 × 6) and eigenvectors (X × Y × Z × 3 × 3),
    // in the standard (C) layout and in NIfTI's own (F) layout
    for shape in [[3, 4, 2, 1, 6], [3, 4, 2, 3, 3]] {
        let c = Array::from_shape_fn(IxDyn(&shape), |i| value(i.slice()));
        let f = Array::from_shape_fn(IxDyn(&shape).f(), |i| value(i.slice()));
        for (name, data) in [("c.nii.gz", &c), ("f.nii", &f)] {
            let p = dir.path().join(name);
            write_nifti(&p, data, &g).unwrap();
            let obj = nifti::ReaderOptions::new().read_file(&p).unwrap();
            assert_eq!(
                obj.header().dim,
                [5, 3, 4, 2, shape[3] as u16, shape[4] as u16, 1, 1]
            );
            let back = obj.into_volume().into_ndarray::<f32>().unwrap();
            assert_eq!(back.shape(), shape);
            assert_eq!(&back, data, "{name} {shape:?}");
            // the first voxels on disk run along x
            let raw = std::fs::read(&p).unwrap();
            if name.ends_with(".nii") {
                let first: Vec<f32> = raw[352..352 + 12]
                    .chunks(4)
                    .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
                    .collect();
                assert_eq!(first, [0.0, 1.0, 2.0]);
            }
        }
    }
    let e = message(
        write_nifti(
            dir.path().join("x.nii"),
            &Array::<f32, _>::zeros(IxDyn(&[2, 2])),
            &g,
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("shape [2, 2] cannot be stored: 3 to 5 axes"),
        "{e}"
    );
}

#[test]
fn volume_writer_writes_what_write_nifti_writes_and_nothing_when_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = f32_image(false);
    let input = put(dir.path(), "in.nii", &bytes);
    let image = read_image(&input).unwrap();
    let g = read_header(&input).unwrap().geometry();

    let whole = dir.path().join("whole.nii.gz");
    write_nifti(&whole, &image.data, &g).unwrap();
    let streamed = dir.path().join("streamed.nii.gz");
    let mut w = VolumeWriter::<f32>::create(&streamed, &[3, 4, 2, 5], &g).unwrap();
    for t in 0..5 {
        w.write_volume(&image.data.index_axis(Axis(3), t)).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(
        std::fs::read(&whole).unwrap(),
        std::fs::read(&streamed).unwrap()
    );

    let p = dir.path().join("partial.nii.gz");
    let mut w = VolumeWriter::<f32>::create(&p, &[3, 4, 2, 5], &g).unwrap();
    let e = message(w.write_volume(&Array3::zeros((3, 4, 3))).unwrap_err());
    assert!(
        e.contains("partial.nii.gz: volume 0 has shape [3, 4, 3], not the image's [3, 4, 2]"),
        "{e}"
    );
    w.write_volume(&image.data.index_axis(Axis(3), 0)).unwrap();
    let e = message(w.finish().unwrap_err());
    assert!(
        e.contains("partial.nii.gz: 1 of 5 volumes written; the file was not created"),
        "{e}"
    );
    let w = VolumeWriter::<f32>::create(&p, &[3, 4, 2, 5], &g).unwrap();
    drop(w);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["in.nii", "streamed.nii.gz", "whole.nii.gz"]);
}
