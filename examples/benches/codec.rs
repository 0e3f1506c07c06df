//! The codec on volume blocks: lz4 (`lz4_flex`, what Ember's shuffle,
//! spill and cache blocks use) compress and decompress throughput beside
//! a plain memory copy of the same bytes, and the compression ratio; also
//! Ember's checksummed block (`ember_core::codec::compress_block`: lz4
//! plus an xxh3 checksum checked on read).
//!
//! Blocks: `f32` volumes of a smooth phantom head (an ellipsoid of
//! slowly varying intensity around 1000 on a zero background), with and
//! without Gaussian noise of σ = 20 added everywhere (magnitude images, as
//! MRI stores them), 64 MiB each by default.
//!
//! Usage: `cargo bench -p ember-examples --bench codec -- [--quick]
//! [--side N] [--reps N]`.

use clap::Parser;
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Ember codec benchmark: lz4 on volume blocks beside memcpy")]
struct Cli {
    /// Small blocks, for a quick run.
    #[arg(long)]
    quick: bool,
    /// Side of the cubic volume in voxels [default: 256 (64 MiB);
    /// --quick: 128 (8 MiB)].
    #[arg(long)]
    side: Option<usize>,
    /// Repetitions of each measurement (the best is printed).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A `side`³ phantom volume; `sigma` > 0 adds Gaussian noise (magnitude
/// kept, as in MRI).
fn phantom(side: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut gauss = move || {
        // Box–Muller.
        let u: f32 = rng.gen_range(f32::EPSILON..1.0);
        let v: f32 = rng.gen();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let c = |i: usize| (2 * i + 1) as f32 / side as f32 - 1.0;
    let mut out = Vec::with_capacity(side * side * side);
    for z in 0..side {
        for y in 0..side {
            for x in 0..side {
                let (px, py, pz) = (c(x), c(y), c(z));
                let r = (px / 0.8).powi(2) + (py / 0.9).powi(2) + (pz / 0.75).powi(2);
                let signal = if r < 1.0 {
                    1000.0 + 200.0 * (3.0 * px).sin() * (2.0 * py).cos() - 150.0 * r
                } else {
                    0.0
                };
                let s = if sigma > 0.0 {
                    (signal + sigma * gauss()).abs()
                } else {
                    signal
                };
                out.push(s);
            }
        }
    }
    out
}

/// Best time of `reps` runs of `f`, in seconds.
fn best<R>(reps: usize, mut f: impl FnMut() -> R) -> (f64, R) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let r = std::hint::black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    (best, last.expect("at least one run"))
}

fn run(cli: &Cli) -> Result<(), String> {
    let side = cli.side.unwrap_or(if cli.quick { 128 } else { 256 });
    let reps = cli.reps;
    println!(
        "codec bench: {side}^3 f32 volume blocks ({} MiB), best of {reps}; MB/s of uncompressed bytes",
        (side * side * side * 4) >> 20
    );
    println!();
    println!(
        "{:<22} {:<26} {:>10} {:>8}",
        "block", "operation", "MB/s", "ratio"
    );
    for (name, sigma) in [("phantom + noise σ=20", 20.0), ("phantom, no noise", 0.0)] {
        let volume = phantom(side, sigma, 7);
        let bytes: Vec<u8> = volume.iter().flat_map(|f| f.to_le_bytes()).collect();
        let mb = bytes.len() as f64 / 1e6;
        let mut dest = vec![0u8; bytes.len()];
        let (t_copy, ()) = best(reps, || {
            dest.copy_from_slice(&bytes);
            std::hint::black_box(&dest);
        });
        let (t_lz4c, packed) = best(reps, || lz4_flex::compress_prepend_size(&bytes));
        let (t_lz4d, unpacked) = best(reps, || {
            lz4_flex::decompress_size_prepended(&packed).map_err(|e| e.to_string())
        });
        if unpacked? != bytes {
            return Err(format!("{name}: lz4 round trip changed the bytes"));
        }
        let (t_blkc, block) = best(reps, || ember_core::codec::compress_block(&bytes));
        let (t_blkd, back) = best(reps, || {
            ember_core::codec::decompress_block(&block, name).map_err(|e| e.to_string())
        });
        if back? != bytes {
            return Err(format!("{name}: block round trip changed the bytes"));
        }
        let ratio = bytes.len() as f64 / packed.len() as f64;
        let rows = [
            ("memcpy", t_copy, None),
            ("lz4 compress", t_lz4c, Some(ratio)),
            ("lz4 decompress", t_lz4d, None),
            ("block compress (+xxh3)", t_blkc, None),
            ("block decompress (+xxh3)", t_blkd, None),
        ];
        for (op, t, ratio) in rows {
            println!(
                "{:<22} {:<26} {:>10.0} {:>8}",
                name,
                op,
                mb / t,
                ratio.map_or(String::new(), |r| format!("{r:.2}x"))
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codec bench: {e}");
            ExitCode::FAILURE
        }
    }
}
