//! NIfTI reading and writing: files built byte by byte here (independent of
//! the writer under test), round trips, and every bad-input error.

use std::io::Write;
use std::path::{Path, PathBuf};

use ember_image::nifti_io::{
    read_array, read_header, read_image, read_volume, volumes, write_image4, write_volume,
};
use ember_image::ImageError;
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{Array3, Array4, Axis, ShapeBuilder};

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
        let start = if self.vox_offset.is_finite() {
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
            e.contains("promise 96 data bytes from offset 352, but the data ends after 64, \
                 inside volume 2 (counting from 0) of 3"),
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
