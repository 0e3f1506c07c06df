//! The gradient table: FSL `bvals` / `bvecs` text files parsed and checked
//! the way DIPY's `gradient_table` does (spec step 1).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{file_name, ImageError, Result};

/// b-values at or below this are b0 volumes (spec step 1, DIPY's default).
pub const DEFAULT_B0_THRESHOLD: f64 = 10.0;

/// How far from 1 a b-vector's norm may be and still count as unit (DIPY's `atol`).
const UNIT_TOLERANCE: f64 = 1e-2;

/// One b-value and direction per volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientTable {
    /// b-values in s/mm², one per volume; 0 for b0 rows whose vector was
    /// not unit (DIPY's `gradient_table` zeroes both).
    pub bvals: Vec<f64>,
    /// Unit gradient directions; `[0, 0, 0]` for b0 rows that were not unit
    /// (including the NaN rows some scanners write for b0).
    pub bvecs: Vec<[f64; 3]>,
    /// Volumes with `bval <= b0_threshold` are b0.
    pub b0_threshold: f64,
}

/// A number read from a text file, with where it was.
#[derive(Debug, Clone, Copy)]
struct Token {
    value: f64,
    line: usize,
    column: usize,
}

impl GradientTable {
    /// Reads FSL `bvals` and `bvecs` files.
    pub fn from_fsl_files(
        bvals: impl AsRef<Path>,
        bvecs: impl AsRef<Path>,
        b0_threshold: f64,
    ) -> Result<Self> {
        let (bvals, bvecs) = (bvals.as_ref(), bvecs.as_ref());
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| ImageError::io(p, "cannot read", e));
        Self::from_fsl_text(
            &read(bvals)?,
            &read(bvecs)?,
            &file_name(bvals),
            &file_name(bvecs),
            b0_threshold,
        )
    }

    /// Parses FSL `bvals` and `bvecs` text; the names only label errors.
    ///
    /// `bvals` may be one row or one column. `bvecs` may be 3 rows of N
    /// (FSL's layout) or N rows of 3; a 3×3 file is read as N rows of 3, as
    /// DIPY does. Numbers are separated by whitespace or commas; `#` starts a
    /// comment. b0 rows may hold NaN (read as 0); a b0 row whose vector is
    /// not unit length (within 0.01) gets a zero vector and a zero b-value,
    /// as DIPY's `gradient_table` does. Every other row must be a finite
    /// unit vector.
    pub fn from_fsl_text(
        bvals_text: &str,
        bvecs_text: &str,
        bvals_name: &str,
        bvecs_name: &str,
        b0_threshold: f64,
    ) -> Result<Self> {
        if !b0_threshold.is_finite() {
            return Err(ImageError::invalid(
                "b0_threshold",
                format!("{b0_threshold} is not finite"),
            ));
        }
        let vals = parse_matrix(bvals_text, bvals_name)?;
        let vecs = parse_matrix(bvecs_text, bvecs_name)?;

        let bvals: Vec<Token> = match (vals.len(), vals.first().map_or(0, Vec::len)) {
            (0, _) => return Err(gradient_error(bvals_name, "holds no b-values")),
            (1, _) => vals.into_iter().flatten().collect(),
            (_, 1) => vals.into_iter().flatten().collect(),
            (r, c) => {
                return Err(gradient_error(
                    bvals_name,
                    format!("must be one row or one column of b-values, found {r} rows of {c}"),
                ))
            }
        };
        for t in &bvals {
            if !t.value.is_finite() || t.value < 0.0 {
                return Err(text_error(
                    bvals_name,
                    t,
                    format!("b-value {} is not finite and non-negative", t.value),
                ));
            }
        }

        let rows: Vec<[Token; 3]> = match (vecs.len(), vecs.first().map_or(0, Vec::len)) {
            (_, 3) => vecs.iter().map(|r| [r[0], r[1], r[2]]).collect(),
            (3, n) => (0..n)
                .map(|i| [vecs[0][i], vecs[1][i], vecs[2][i]])
                .collect(),
            (0, _) => return Err(gradient_error(bvecs_name, "holds no b-vectors")),
            (r, c) => {
                return Err(gradient_error(
                    bvecs_name,
                    format!("must be 3 rows or 3 columns of numbers, found {r} rows of {c}"),
                ))
            }
        };
        if rows.len() != bvals.len() {
            return Err(gradient_error(
                &format!("{bvals_name}, {bvecs_name}"),
                format!("{} b-values but {} b-vectors", bvals.len(), rows.len()),
            ));
        }

        let mut bvecs = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for (b, row) in bvals.iter().zip(&rows) {
            let is_b0 = b.value <= b0_threshold;
            if !is_b0 {
                if let Some(t) = row.iter().find(|t| !t.value.is_finite()) {
                    return Err(text_error(
                        bvecs_name,
                        t,
                        format!(
                            "b-vector component {} is not finite for b = {}",
                            t.value, b.value
                        ),
                    ));
                }
            }
            let v = row.map(|t| if t.value.is_nan() { 0.0 } else { t.value });
            let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            let unit = (norm - 1.0).abs() <= UNIT_TOLERANCE;
            if is_b0 && !unit {
                // DIPY's gradient_table zeroes the b-value of such a row too.
                bvecs.push([0.0; 3]);
                values.push(0.0);
            } else if unit {
                bvecs.push(v);
                values.push(b.value);
            } else {
                return Err(text_error(
                    bvecs_name,
                    &row[0],
                    format!(
                        "b-vector {v:?} for b = {} is not unit length (norm {norm})",
                        b.value
                    ),
                ));
            }
        }
        Ok(GradientTable {
            bvals: values,
            bvecs,
            b0_threshold,
        })
    }

    /// Number of volumes described.
    pub fn len(&self) -> usize {
        self.bvals.len()
    }

    /// Whether the table describes no volume.
    pub fn is_empty(&self) -> bool {
        self.bvals.is_empty()
    }

    /// `true` for each b0 volume (`bval <= b0_threshold`).
    pub fn b0_mask(&self) -> Vec<bool> {
        self.bvals.iter().map(|&b| b <= self.b0_threshold).collect()
    }

    /// Shell selection: the table of the volumes with `bval <= max_bval`,
    /// b0 volumes always included, and the indices (ascending) of the kept
    /// volumes in this table, i.e. in the image.
    ///
    /// b-values of a shell scatter on real scanners (HCP's b = 1000 shell
    /// holds 990 to 1010), so pass a bound between shells, e.g. 1500 to keep
    /// the b0s and the b = 1000 shell. Errors, naming `max_bval`, unless at
    /// least one diffusion-weighted volume and 7 volumes in all remain (a
    /// tensor has 6 unknowns plus S0).
    pub fn up_to_bval(&self, max_bval: f64) -> Result<(GradientTable, Vec<usize>)> {
        let problem = |what: String| {
            Err(ImageError::invalid(
                "GradientTable::up_to_bval: max_bval",
                format!("max_bval = {max_bval}: {what}"),
            ))
        };
        if max_bval.is_nan() {
            return problem("is not a number".into());
        }
        let kept: Vec<usize> = (0..self.len())
            .filter(|&i| self.bvals[i] <= self.b0_threshold || self.bvals[i] <= max_bval)
            .collect();
        let weighted = kept
            .iter()
            .filter(|&&i| self.bvals[i] > self.b0_threshold)
            .count();
        if weighted == 0 {
            return problem(format!(
                "keeps no diffusion-weighted volume (b > b0_threshold = {})",
                self.b0_threshold
            ));
        }
        if kept.len() < 7 {
            return problem(format!(
                "keeps {} volumes ({weighted} diffusion-weighted); a tensor fit needs at least 7",
                kept.len()
            ));
        }
        let table = GradientTable {
            bvals: kept.iter().map(|&i| self.bvals[i]).collect(),
            bvecs: kept.iter().map(|&i| self.bvecs[i]).collect(),
            b0_threshold: self.b0_threshold,
        };
        Ok((table, kept))
    }

    /// Checks that the table has one entry per volume of `image`, whose
    /// header says it has `n_volumes` (`dim[4]`).
    pub fn check_volumes(&self, n_volumes: usize, image: impl AsRef<Path>) -> Result<()> {
        if self.len() != n_volumes {
            return Err(gradient_error(
                &file_name(image.as_ref()),
                format!(
                    "header field dim[4] = {n_volumes} but the gradient table has {} entries",
                    self.len()
                ),
            ));
        }
        Ok(())
    }
}

fn gradient_error(file: &str, problem: impl Into<String>) -> ImageError {
    ImageError::Gradients {
        file: file.to_string(),
        problem: problem.into(),
    }
}

fn text_error(file: &str, at: &Token, problem: String) -> ImageError {
    ImageError::Text {
        file: file.to_string(),
        line: at.line,
        column: at.column,
        problem,
    }
}

/// Splits text into rows of numbers (blank and comment lines skipped); every
/// row must have as many numbers as the first.
fn parse_matrix(text: &str, file: &str) -> Result<Vec<Vec<Token>>> {
    let mut rows: Vec<Vec<Token>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        let mut row = Vec::new();
        let mut chars = content.char_indices().peekable();
        let mut column = 0usize;
        while let Some(&(start, c)) = chars.peek() {
            if c.is_whitespace() || c == ',' {
                chars.next();
                column += 1;
                continue;
            }
            let token_column = column + 1;
            let mut end = start;
            while let Some(&(at, c)) = chars.peek() {
                if c.is_whitespace() || c == ',' {
                    break;
                }
                end = at + c.len_utf8();
                chars.next();
                column += 1;
            }
            let word = &content[start..end];
            let value: f64 = word.parse().map_err(|_| ImageError::Text {
                file: file.to_string(),
                line: i + 1,
                column: token_column,
                problem: format!("cannot parse {word:?} as a number"),
            })?;
            row.push(Token {
                value,
                line: i + 1,
                column: token_column,
            });
        }
        if row.is_empty() {
            continue;
        }
        if let Some(first) = rows.first() {
            if first.len() != row.len() {
                return Err(ImageError::Text {
                    file: file.to_string(),
                    line: i + 1,
                    column: 1,
                    problem: format!(
                        "has {} numbers but the first row has {}",
                        row.len(),
                        first.len()
                    ),
                });
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(bvals: &str, bvecs: &str) -> Result<GradientTable> {
        GradientTable::from_fsl_text(bvals, bvecs, "b.bval", "b.bvec", DEFAULT_B0_THRESHOLD)
    }

    #[test]
    fn reads_fsl_three_row_layout() {
        let g = table("0 1000 2000 3000\n", "0 1 0 0\n0 0 1 0\n0 0 0 1\n").unwrap();
        assert_eq!(g.bvals, [0.0, 1000.0, 2000.0, 3000.0]);
        assert_eq!(
            g.bvecs,
            [[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        );
        assert_eq!(g.b0_mask(), [true, false, false, false]);
    }

    #[test]
    fn three_by_three_is_read_as_rows_of_vectors_like_dipy() {
        let g = table("0 1000 2000\n", "0 0 0\n0 1 0\n0 0 1\n").unwrap();
        assert_eq!(g.bvecs, [[0.0; 3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    }

    #[test]
    fn reads_n_rows_of_three_and_a_bval_column() {
        let g = table(
            "5\n1000\n1000\n1000\n",
            "nan nan nan\n1 0 0\n0 1 0\n0,0,1\n",
        )
        .unwrap();
        assert_eq!(
            g.bvecs,
            [[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        );
        assert_eq!(g.b0_mask(), [true, false, false, false]);
    }

    #[test]
    fn zeroes_non_unit_b0_vectors_and_keeps_unit_ones() {
        let g = table("5 10 1000", "0.5 0 1\n0 1 0\n1 0 0").unwrap();
        assert_eq!(g.bvecs, [[0.0; 3], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]);
        assert_eq!(g.bvals, [0.0, 10.0, 1000.0]);
    }

    #[test]
    fn unparsable_number_names_line_and_column() {
        let e = table("0 1000\n", "0 1\n0 x0\n0 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "b.bvec:2:3: cannot parse \"x0\" as a number");
    }

    #[test]
    fn non_finite_vector_of_a_diffusion_row_is_an_error() {
        let e = table("0 1000\n", "0 nan\n0 0\n0 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("b.bvec:1:3: b-vector component NaN is not finite"),
            "{e}"
        );
    }

    #[test]
    fn non_unit_vector_of_a_diffusion_row_is_an_error() {
        let e = table("0 1000\n", "0 0.5\n0 0\n0 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not unit length"), "{e}");
    }

    #[test]
    fn mismatched_counts_are_an_error() {
        let e = table("0 1000 1000\n", "0 1\n0 0\n0 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "b.bval, b.bvec: 3 b-values but 2 b-vectors");
    }

    #[test]
    fn ragged_rows_are_an_error() {
        let e = table("0 1000\n", "0 1\n0\n0 0\n").unwrap_err().to_string();
        assert_eq!(e, "b.bvec:2:1: has 1 numbers but the first row has 2");
    }

    fn two_shells() -> GradientTable {
        // b0, then 5 directions at each of b = 1000 and 2000, then a b0.
        let dirs = [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.6, 0.8, 0.0],
            [0.0, 0.6, 0.8],
        ];
        let mut bvals = vec![5.0];
        let mut bvecs = vec![[0.0; 3]];
        for b in [1000.0, 2000.0] {
            for d in dirs {
                bvals.push(b);
                bvecs.push(d);
            }
        }
        bvals.push(0.0);
        bvecs.push([0.0; 3]);
        GradientTable {
            bvals,
            bvecs,
            b0_threshold: DEFAULT_B0_THRESHOLD,
        }
    }

    #[test]
    fn shell_selection_keeps_b0s_and_the_lower_shell() {
        let g = two_shells();
        let (sub, kept) = g.up_to_bval(1500.0).unwrap();
        assert_eq!(kept, [0, 1, 2, 3, 4, 5, 11]);
        assert_eq!(
            sub.bvals,
            [5.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 0.0]
        );
        assert_eq!(sub.bvecs[4], [0.6, 0.8, 0.0]);
        assert_eq!(sub.b0_threshold, g.b0_threshold);
        // Everything kept: the same table.
        let (all, kept) = g.up_to_bval(3000.0).unwrap();
        assert_eq!(all, g);
        assert_eq!(kept, (0..12).collect::<Vec<_>>());
        // The bound is inclusive.
        assert_eq!(g.up_to_bval(2000.0).unwrap().0, g);
    }

    #[test]
    fn shell_selection_needs_seven_volumes_and_a_weighted_one() {
        let mut g = two_shells();
        // Without the last b0, the b = 1000 shell leaves 6 volumes: too few.
        g.bvals.pop();
        g.bvecs.pop();
        let e = g.up_to_bval(1000.0).unwrap_err().to_string();
        assert!(
            e.contains("max_bval = 1000") && e.contains("keeps 6 volumes"),
            "{e}"
        );
        let e = g.up_to_bval(9.0).unwrap_err().to_string();
        assert!(
            e.contains("max_bval = 9") && e.contains("no diffusion-weighted"),
            "{e}"
        );
        assert!(g.up_to_bval(f64::NAN).is_err());
        assert_eq!(g.up_to_bval(2000.0).unwrap().1.len(), 11);
    }

    #[test]
    fn count_is_checked_against_the_image() {
        let g = table("0 1000\n", "0 1\n0 0\n0 0\n").unwrap();
        assert!(g.check_volumes(2, "dwi.nii.gz").is_ok());
        let e = g.check_volumes(3, "dwi.nii.gz").unwrap_err().to_string();
        assert_eq!(
            e,
            "dwi.nii.gz: header field dim[4] = 3 but the gradient table has 2 entries"
        );
    }
}
