//! PNG montages of axial slices: greyscale FA and direction-coloured FA.
//!
//! Slices `z = 0, 1, ...` are tiled left to right, top to bottom, in a grid
//! of `ceil(sqrt(nz))` columns. Within a tile x grows to the right and y
//! grows upwards (row `ny - 1 - y`), so with a RAS affine anterior is up.

use std::io::{BufWriter, Write};
use std::path::Path;

use ndarray::{ArrayView3, ArrayView4};

use crate::atomic;
use crate::error::{file_name, ImageError, Result};

/// An 8-bit image ready to encode: `channels` is 1 (grey) or 3 (RGB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Montage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 for greyscale, 3 for RGB.
    pub channels: usize,
    /// Row-major pixels, `channels` bytes each.
    pub pixels: Vec<u8>,
}

/// Maps FA (0..1; NaN and negatives to 0, above 1 to 1) to a byte.
fn to_byte(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Lays out the axial slices of a volume of shape `(nx, ny, nz)`, asking
/// `pixel(x, y, z, out)` to fill each voxel's `channels` bytes.
fn tile(
    (nx, ny, nz): (usize, usize, usize),
    channels: usize,
    mut pixel: impl FnMut(usize, usize, usize, &mut [u8]),
) -> Result<Montage> {
    if nx == 0 || ny == 0 || nz == 0 {
        return Err(ImageError::invalid(
            "montage",
            format!("empty volume of shape {:?}", (nx, ny, nz)),
        ));
    }
    let cols = (1..=nz).find(|c| c * c >= nz).unwrap_or(nz);
    let rows = nz.div_ceil(cols);
    let (width, height) = (cols * nx, rows * ny);
    if width > u32::MAX as usize || height > u32::MAX as usize {
        return Err(ImageError::invalid(
            "montage",
            format!("{width}×{height} pixels is too large for PNG"),
        ));
    }
    let mut pixels = vec![0u8; width * height * channels];
    for z in 0..nz {
        let (tx, ty) = ((z % cols) * nx, (z / cols) * ny);
        for y in 0..ny {
            let row = ty + (ny - 1 - y);
            for x in 0..nx {
                let at = (row * width + tx + x) * channels;
                pixel(x, y, z, &mut pixels[at..at + channels]);
            }
        }
    }
    Ok(Montage {
        width,
        height,
        channels,
        pixels,
    })
}

/// Greyscale montage of an FA map.
pub fn fa_montage(fa: ArrayView3<'_, f32>) -> Result<Montage> {
    tile(fa.dim(), 1, |x, y, z, out| out[0] = to_byte(fa[[x, y, z]]))
}

/// Montage of an RGB map given as `[x, y, z, 3]` values in 0..1 (DIPY's
/// colour FA, `rgb`).
pub fn rgb_montage(rgb: ArrayView4<'_, f32>) -> Result<Montage> {
    let (nx, ny, nz, c) = rgb.dim();
    if c != 3 {
        return Err(ImageError::invalid(
            "rgb_montage",
            format!("an RGB map has 3 values a voxel, not {c}"),
        ));
    }
    tile((nx, ny, nz), 3, |x, y, z, out| {
        for (c, o) in out.iter_mut().enumerate() {
            *o = to_byte(rgb[[x, y, z, c]]);
        }
    })
}

/// Colour-FA montage: RGB = |principal eigenvector| × FA, the eigenvectors
/// given as `[x, y, z, 3]`.
pub fn color_fa_montage(
    fa: ArrayView3<'_, f32>,
    principal: ArrayView4<'_, f32>,
) -> Result<Montage> {
    let (nx, ny, nz) = fa.dim();
    if principal.dim() != (nx, ny, nz, 3) {
        return Err(ImageError::invalid(
            "color_fa_montage",
            format!(
                "eigenvectors of shape {:?} do not match FA {:?} × 3",
                principal.dim(),
                fa.dim()
            ),
        ));
    }
    tile(fa.dim(), 3, |x, y, z, out| {
        let f = fa[[x, y, z]];
        for (c, o) in out.iter_mut().enumerate() {
            *o = to_byte(principal[[x, y, z, c]].abs() * f);
        }
    })
}

/// Encodes `montage` as PNG at `path`, via a temporary file in the same
/// folder renamed into place when complete.
pub fn write_png(path: impl AsRef<Path>, montage: &Montage) -> Result<()> {
    let path = path.as_ref();
    let colour = match montage.channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        c => {
            return Err(ImageError::invalid(
                "write_png",
                format!("{c} channels (1 or 3 supported)"),
            ))
        }
    };
    let tmp = atomic::temp_beside(path, ".montage-", ".png")?;
    let png_err = |source| ImageError::Png {
        file: file_name(path),
        source,
    };
    {
        let mut out = BufWriter::new(tmp.as_file());
        let mut enc = png::Encoder::new(&mut out, montage.width as u32, montage.height as u32);
        enc.set_color(colour);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(&montage.pixels).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
        out.flush()
            .map_err(|e| ImageError::io(path, "cannot write", e))?;
    }
    atomic::commit(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, Array4};

    #[test]
    fn slices_tile_in_a_square_grid_with_y_up() {
        let fa =
            Array3::from_shape_fn(
                (2, 3, 5),
                |(x, y, z)| if (x, y, z) == (1, 0, 4) { 1.0f32 } else { 0.0 },
            );
        let m = fa_montage(fa.view()).unwrap();
        // 5 slices → 3 columns × 2 rows of 2×3 tiles
        assert_eq!((m.width, m.height, m.channels), (6, 6, 1));
        // slice 4 is column 1, row 1; voxel (1, 0) is its bottom-right pixel
        let lit: Vec<usize> = m
            .pixels
            .iter()
            .enumerate()
            .filter(|(_, &p)| p == 255)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(lit, [5 * 6 + 2 + 1]);
    }

    #[test]
    fn written_png_decodes_to_the_same_pixels_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let fa = Array3::from_shape_fn((4, 3, 2), |(x, y, z)| (x + y + z) as f32 / 7.0);
        let m = fa_montage(fa.view()).unwrap();
        let path = dir.path().join("fa.png");
        write_png(&path, &m).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(
            (info.width as usize, info.height as usize),
            (m.width, m.height)
        );
        assert_eq!(&buf[..info.buffer_size()], &m.pixels[..]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn colour_is_abs_eigenvector_times_fa_and_clamped() {
        let fa = Array3::from_elem((1, 1, 1), 0.5f32);
        let mut ev = Array4::zeros((1, 1, 1, 3));
        ev[[0, 0, 0, 0]] = -1.0f32;
        ev[[0, 0, 0, 2]] = 4.0;
        let m = color_fa_montage(fa.view(), ev.view()).unwrap();
        assert_eq!(m.pixels, [128, 0, 255]);
        let bad = Array4::zeros((1, 1, 2, 3));
        assert!(color_fa_montage(fa.view(), bad.view()).is_err());
    }
}
