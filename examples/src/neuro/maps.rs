//! The tensor maps the pipeline can write, as DIPY's `dipy_fit_dti`
//! workflow writes them: names, channels per voxel and array layouts.

use ember_image::dti::Tensor;
use serde::{Deserialize, Serialize};

/// One map of a fitted tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Map {
    /// Fractional anisotropy.
    Fa,
    /// Geodesic anisotropy.
    Ga,
    /// Colour FA: |principal eigenvector| × FA, clipped to [0, 1]; written
    /// as bytes (255 × value, truncated), as DIPY's workflow does.
    Rgb,
    /// Mean diffusivity (mm²/s).
    Md,
    /// Axial diffusivity (the largest eigenvalue).
    Ad,
    /// Radial diffusivity (mean of the two smaller eigenvalues).
    Rd,
    /// Tensor mode.
    Mode,
    /// Eigenvectors: `[x, y, z, i, j]` is component `i` of eigenvector `j`.
    Evecs,
    /// Eigenvalues, descending.
    Evals,
    /// The tensor's lower triangle `Dxx, Dxy, Dyy, Dxz, Dyz, Dzz` as
    /// `[x, y, z, 1, 6]` (NIfTI's symmetric-matrix layout), written as
    /// float64 as DIPY's workflow does (every other map is float32).
    Tensors,
}

impl Map {
    /// Every map, in DIPY's workflow order.
    pub const ALL: [Map; 10] = [
        Map::Tensors,
        Map::Fa,
        Map::Ga,
        Map::Rgb,
        Map::Md,
        Map::Ad,
        Map::Rd,
        Map::Mode,
        Map::Evecs,
        Map::Evals,
    ];

    /// What `neuro run` writes by default: every map but the two of 6 and
    /// 9 values a voxel (`tensors`, `evecs`), which are large to store.
    pub const DEFAULT: [Map; 8] = [
        Map::Fa,
        Map::Ga,
        Map::Rgb,
        Map::Md,
        Map::Ad,
        Map::Rd,
        Map::Mode,
        Map::Evals,
    ];

    /// The file stem DIPY's workflow uses (`fa` for `fa.nii.gz`).
    pub fn name(self) -> &'static str {
        match self {
            Map::Fa => "fa",
            Map::Ga => "ga",
            Map::Rgb => "rgb",
            Map::Md => "md",
            Map::Ad => "ad",
            Map::Rd => "rd",
            Map::Mode => "mode",
            Map::Evecs => "evecs",
            Map::Evals => "evals",
            Map::Tensors => "tensors",
        }
    }

    /// The `param-` label of the map in BIDS-derivatives names.
    pub fn bids_param(self) -> &'static str {
        match self {
            Map::Fa => "FA",
            Map::Ga => "GA",
            Map::Rgb => "RGB",
            Map::Md => "MD",
            Map::Ad => "AD",
            Map::Rd => "RD",
            Map::Mode => "MODE",
            Map::Evecs => "evecs",
            Map::Evals => "evals",
            Map::Tensors => "tensor",
        }
    }

    /// Dimensions after the three spatial ones (none for a scalar map).
    pub fn trailing_dims(self) -> &'static [usize] {
        match self {
            Map::Fa | Map::Ga | Map::Md | Map::Ad | Map::Rd | Map::Mode => &[],
            Map::Rgb | Map::Evals => &[3],
            Map::Evecs => &[3, 3],
            Map::Tensors => &[1, 6],
        }
    }

    /// Values per voxel.
    pub fn channels(self) -> usize {
        self.trailing_dims().iter().product()
    }

    /// Appends the map's values for `t`, in the Fortran order of its
    /// trailing dimensions (as they are stored in the NIfTI file).
    pub fn push(self, t: &Tensor, out: &mut Vec<f32>) {
        let f = |v: f64| v as f32;
        match self {
            Map::Fa => out.push(f(t.fa())),
            Map::Ga => out.push(f(t.ga())),
            Map::Md => out.push(f(t.md())),
            Map::Ad => out.push(f(t.ad())),
            Map::Rd => out.push(f(t.rd())),
            Map::Mode => out.push(f(t.mode())),
            Map::Rgb => out.extend(t.rgb().map(f)),
            Map::Evals => out.extend(t.evals.map(f)),
            // Index (i, j), i fastest: component i of eigenvector j.
            Map::Evecs => out.extend(t.evecs.iter().flat_map(|e| e.map(f))),
            Map::Tensors => out.extend(t.lower_triangular().map(f)),
        }
    }
}

/// The maps a fit computes: the ones asked for, plus FA, MD and colour FA,
/// which the QA images and `fa.png` need; in [`Map::ALL`] order.
pub fn computed(saved: &[Map]) -> Vec<Map> {
    Map::ALL
        .into_iter()
        .filter(|m| saved.contains(m) || matches!(m, Map::Fa | Map::Md | Map::Rgb))
        .collect()
}

/// Where each map's values start within a voxel's values, for the maps
/// `computed` in order.
pub fn offsets(computed: &[Map]) -> Vec<(Map, usize)> {
    let mut at = 0;
    computed
        .iter()
        .map(|&m| {
            let start = at;
            at += m.channels();
            (m, start)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_dipys_workflow() {
        let total: usize = Map::ALL.iter().map(|m| m.channels()).sum();
        assert_eq!(total, 6 + 1 + 1 + 3 + 1 + 1 + 1 + 1 + 9 + 3);
        let t = Tensor {
            evals: [3e-3, 2e-3, 1e-3],
            evecs: [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        };
        let mut v = Vec::new();
        Map::Evecs.push(&t, &mut v);
        // Column j is eigenvector j: eigenvector 1 is +z.
        assert_eq!(v[3..6], [0.0, 0.0, 1.0]);
        let mut v = Vec::new();
        Map::Tensors.push(&t, &mut v);
        // Dxx, Dxy, Dyy, Dxz, Dyz, Dzz: y carries λ3 = 1e-3, z λ2 = 2e-3.
        assert_eq!(v, [3e-3, 0.0, 1e-3, 0.0, 0.0, 2e-3]);
        assert_eq!(
            computed(&[Map::Ad]),
            vec![Map::Fa, Map::Rgb, Map::Md, Map::Ad]
        );
        assert_eq!(
            offsets(&computed(&[Map::Ad])),
            vec![(Map::Fa, 0), (Map::Rgb, 1), (Map::Md, 4), (Map::Ad, 5)]
        );
    }
}
