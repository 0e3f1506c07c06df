//! Deterministic inputs the benchmarks generate: a seeded random generator
//! whose output is fixed forever, and the PageRank benchmark's edge list
//! (written once into a data folder and read by Ember, PySpark and the
//! single-threaded baseline alike).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// SplitMix64: a tiny seeded generator whose output is fixed forever (no
/// dependence on a library's algorithm choice), so generated inputs are the
/// same on every machine and run.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The shape of a generated graph.
#[derive(Clone, Copy, Debug)]
pub struct GraphSpec {
    /// Lines of the edge list (duplicate edges and self-loops included).
    pub edges: u64,
    /// Node ids are in `[0, nodes)`.
    pub nodes: u64,
    /// Seed of the generator.
    pub seed: u64,
}

/// Greatest common divisor.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A bijection of `[0, n)`, `x ↦ (a·x + b) mod n`, with `a` the first
/// number from `start` up that is coprime with `n`: it scatters the
/// skewed picks (which favour small numbers) over the id space, and two
/// different ones give sources and destinations different hubs.
struct Scatter {
    a: u64,
    b: u64,
    n: u64,
}

impl Scatter {
    fn new(n: u64, start: u64, b: u64) -> Self {
        let mut a = start % n.max(1);
        while gcd(a, n) != 1 {
            a += 1;
        }
        Scatter { a, b, n }
    }

    fn apply(&self, x: u64) -> u64 {
        ((self.a as u128 * x as u128 + self.b as u128) % self.n as u128) as u64
    }
}

/// Writes the edge list of `spec` to `out`, one `src dst` line per edge,
/// and returns the bytes written. Endpoints are skewed picks `⌊n·u^k⌋` of
/// a uniform `u` (k = 2 for sources, 3 for destinations: densities falling
/// off as x^-1/2 and x^-2/3, so a few nodes have huge out- or in-degrees,
/// most have a handful and many have none, as in web graphs), each
/// scattered by its own bijection of the ids. Hub pairs repeat, so the
/// list has duplicate edges; some nodes have in-links but no out-links.
pub fn write_edges(out: &mut impl Write, spec: GraphSpec) -> std::io::Result<u64> {
    let n = spec.nodes.max(1);
    let mut rng = SplitMix64(spec.seed);
    let src_ids = Scatter::new(n, 0x9E37_79B9, 12_345 % n);
    let dst_ids = Scatter::new(n, 0x85EB_CA6B, 67_890 % n);
    let pick = |u: f64, k: i32| ((n as f64 * u.powi(k)) as u64).min(n - 1);
    let mut written = 0u64;
    let mut line = Vec::with_capacity(48);
    for _ in 0..spec.edges {
        let src = src_ids.apply(pick(rng.unit(), 2));
        let dst = dst_ids.apply(pick(rng.unit(), 3));
        line.clear();
        writeln!(line, "{src} {dst}")?;
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    Ok(written)
}

/// The edge list of `spec` under `dir`, written (through a temporary name,
/// then renamed) unless it is already there.
pub fn edge_list(dir: &Path, spec: GraphSpec) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "edges-{}-n{}-s{}.txt",
        spec.edges, spec.nodes, spec.seed
    ));
    if path.is_file() {
        eprintln!("reusing {}", path.display());
        return Ok(path);
    }
    let start = Instant::now();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        write_edges(&mut f, spec)?;
        f.flush()?;
    }
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "generated {} in {:.1} s",
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(spec: GraphSpec) -> Vec<(u64, u64)> {
        let mut buf = Vec::new();
        write_edges(&mut buf, spec).expect("write to memory");
        String::from_utf8(buf)
            .expect("ASCII")
            .lines()
            .map(|l| {
                let (s, d) = l.split_once(' ').expect("two fields");
                (s.parse().expect("src"), d.parse().expect("dst"))
            })
            .collect()
    }

    #[test]
    fn the_edge_list_is_deterministic_and_in_range() {
        let spec = GraphSpec {
            edges: 5_000,
            nodes: 1_000,
            seed: 7,
        };
        let a = edges(spec);
        assert_eq!(a, edges(spec));
        assert_eq!(a.len(), 5_000);
        assert!(a.iter().all(|&(s, d)| s < 1_000 && d < 1_000));
    }

    #[test]
    fn the_graph_is_skewed_with_duplicates_and_sinks() {
        let a = edges(GraphSpec {
            edges: 20_000,
            nodes: 2_000,
            seed: 1,
        });
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() < a.len(), "some edges repeat");
        let mut out_deg = vec![0u32; 2_000];
        let mut in_deg = vec![0u32; 2_000];
        for &(s, d) in &a {
            out_deg[s as usize] += 1;
            in_deg[d as usize] += 1;
        }
        assert!(*in_deg.iter().max().unwrap() > 1_000, "an in-hub");
        assert!(*out_deg.iter().max().unwrap() > 300, "an out-hub");
        let sinks = (0..2_000)
            .filter(|&v| out_deg[v] == 0 && in_deg[v] > 0)
            .count();
        assert!(sinks > 0, "nodes with in-links and no out-links");
    }

    #[test]
    fn scatter_is_a_bijection() {
        let s = Scatter::new(1_000, 0x9E37_79B9, 12_345 % 1_000);
        let mut seen = vec![false; 1_000];
        for x in 0..1_000 {
            seen[s.apply(x) as usize] = true;
        }
        assert!(seen.iter().all(|&b| b));
    }
}
