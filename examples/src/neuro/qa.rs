//! The QA image a person reads for each subject: three orthogonal slices
//! through the brain's centre (axial, coronal, sagittal) of the mean b0
//! with the mask's outline in red, of colour FA, and of MD.

use ember_image::montage::Montage;
use ndarray::ArrayView3;

/// The voxel at the centre of the mask's bounding box (the volume's centre
/// for an empty mask).
fn centre(mask: ArrayView3<'_, bool>) -> [usize; 3] {
    let (nx, ny, nz) = mask.dim();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0; 3];
    for ((x, y, z), _) in mask.indexed_iter().filter(|(_, &m)| m) {
        for (a, i) in [x, y, z].into_iter().enumerate() {
            lo[a] = lo[a].min(i);
            hi[a] = hi[a].max(i);
        }
    }
    if lo[0] == usize::MAX {
        return [nx / 2, ny / 2, nz / 2];
    }
    [0, 1, 2].map(|a| (lo[a] + hi[a]) / 2)
}

/// The 99th percentile of the finite values where `mask` holds (or of all
/// values), for scaling greys; 1 when that is not positive.
fn high_percentile(v: ArrayView3<'_, f32>, mask: ArrayView3<'_, bool>) -> f32 {
    let mut values: Vec<f32> = v
        .iter()
        .zip(mask.iter())
        .filter(|(x, &m)| m && x.is_finite())
        .map(|(x, _)| *x)
        .collect();
    if values.is_empty() {
        values = v.iter().copied().filter(|x| x.is_finite()).collect();
    }
    values.sort_by(f32::total_cmp);
    let p = values
        .get(values.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(1.0);
    if p > 0.0 {
        p
    } else {
        1.0
    }
}

fn byte(v: f32) -> u8 {
    if v.is_finite() {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    } else {
        0
    }
}

/// One slice of a volume: `axis` fixed at `at`; the two other axes as
/// (columns, rows), rows drawn from the top down so that with a RAS affine
/// superior / anterior is up.
struct Slice {
    axis: usize,
    at: usize,
}

impl Slice {
    fn size(&self, shape: [usize; 3]) -> (usize, usize) {
        let (u, v) = self.plane();
        (shape[u], shape[v])
    }

    fn plane(&self) -> (usize, usize) {
        match self.axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        }
    }

    /// The voxel drawn at (column, row) of a tile of `rows` rows.
    fn voxel(&self, col: usize, row: usize, rows: usize) -> [usize; 3] {
        let (u, v) = self.plane();
        let mut p = [0; 3];
        p[self.axis] = self.at;
        p[u] = col;
        p[v] = rows - 1 - row;
        p
    }
}

/// Builds the QA image of one subject: rows b0 + mask outline, colour FA
/// (`rgb` as `[x, y, z, 3]` values in 0..1), MD; columns the three slices.
/// Small volumes are enlarged so the image is at least about 256 pixels
/// wide.
pub fn qa_image(
    mean_b0: ArrayView3<'_, f32>,
    mask: ArrayView3<'_, bool>,
    rgb: ndarray::ArrayView4<'_, f32>,
    md: ArrayView3<'_, f32>,
) -> Montage {
    let (nx, ny, nz) = mask.dim();
    let shape = [nx, ny, nz];
    let c = centre(mask);
    let slices: Vec<Slice> = [2, 1, 0].map(|axis| Slice { axis, at: c[axis] }).into();
    let tile_w = slices.iter().map(|s| s.size(shape).0).max().unwrap_or(1);
    let tile_h = slices.iter().map(|s| s.size(shape).1).max().unwrap_or(1);
    let scale = (256 / (3 * tile_w).max(1)).clamp(1, 8);
    let gap = 2;
    let (cell_w, cell_h) = (tile_w * scale + gap, tile_h * scale + gap);
    let (width, height) = (3 * cell_w, 3 * cell_h);
    let mut pixels = vec![0u8; width * height * 3];
    let b0_top = high_percentile(mean_b0, mask);
    let md_top = high_percentile(md, mask);
    let inside = |p: [usize; 3]| mask[p];
    let edge = |p: [usize; 3]| {
        inside(p)
            && (0..3).any(|a| {
                let mut lo = p;
                let mut hi = p;
                lo[a] = p[a].wrapping_sub(1);
                hi[a] = p[a] + 1;
                [lo, hi].into_iter().any(|q| q[a] >= shape[a] || !mask[q])
            })
    };
    for (column, slice) in slices.iter().enumerate() {
        let (w, h) = slice.size(shape);
        for row in 0..h {
            for col in 0..w {
                let p = slice.voxel(col, row, h);
                let grey = |v: f32, top: f32| [byte(v / top); 3];
                let b0 = if edge(p) {
                    [255, 0, 0]
                } else {
                    grey(mean_b0[p], b0_top)
                };
                let fa = [0, 1, 2].map(|k| byte(rgb[[p[0], p[1], p[2], k]]));
                let md_px = grey(md[p], md_top);
                for (panel, px) in [b0, fa, md_px].into_iter().enumerate() {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let x = column * cell_w + col * scale + dx;
                            let y = panel * cell_h + row * scale + dy;
                            let at = (y * width + x) * 3;
                            pixels[at..at + 3].copy_from_slice(&px);
                        }
                    }
                }
            }
        }
    }
    Montage {
        width,
        height,
        channels: 3,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, Array4, ShapeBuilder};

    #[test]
    fn qa_images_draw_the_mask_outline_in_red() {
        let shape = (12, 10, 8);
        let mask = Array3::from_shape_fn(shape.f(), |(x, y, z)| {
            (3..9).contains(&x) && (3..7).contains(&y) && (2..6).contains(&z)
        });
        let b0 = Array3::from_elem(shape.f(), 100.0f32);
        let md = Array3::from_elem(shape.f(), 1e-3f32);
        let rgb = Array4::from_elem((12, 10, 8, 3).f(), 0.5f32);
        let m = qa_image(b0.view(), mask.view(), rgb.view(), md.view());
        assert_eq!(m.channels, 3);
        assert_eq!(m.pixels.len(), m.width * m.height * 3);
        let red = m.pixels.chunks(3).filter(|p| p == &[255, 0, 0]).count();
        assert!(red > 0, "the outline is drawn");
        // The colour-FA panel holds the 0.5 grey-blue of the rgb map.
        assert!(m.pixels.chunks(3).any(|p| p == [128, 128, 128]));
    }

    #[test]
    fn one_slice_volumes_make_a_qa_image() {
        let shape = (5, 4, 1);
        let mask = Array3::from_elem(shape.f(), true);
        let b0 = Array3::from_elem(shape.f(), 1.0f32);
        let rgb = Array4::from_elem((5, 4, 1, 3).f(), 0.0f32);
        let m = qa_image(b0.view(), mask.view(), rgb.view(), b0.view());
        assert!(m.width > 0 && m.height > 0);
    }
}
