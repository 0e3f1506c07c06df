//! `neuro`: the diffusion-MRI pipeline of Mehta et al. on Ember.
//!
//! `neuro run [--master URL] [--conf k=v]... --out OUT [SUBJECT]...` masks,
//! denoises and fits a tensor for every subject and writes
//! `OUT/<subject>/{mask,fa,md}.nii.gz` and `fa.png`. With no SUBJECT it
//! first writes one small phantom subject and runs on that.
//! `neuro phantom ...` writes HCP-shaped synthetic subjects.

use clap::{Parser, Subcommand};
use ember_examples::neuro::{output, pipeline, subject, Subject};
use ember_examples::phantom::{write_subjects, PhantomSpec};
use ember_examples::steps::Steps;
use ember_examples::EngineArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "The diffusion-MRI pipeline (mask, denoise, tensor fit) on Ember")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the pipeline over subjects.
    Run {
        #[command(flatten)]
        engine: EngineArgs,
        /// Output folder.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Also write each subject's denoised image.
        #[arg(long)]
        save_denoised: bool,
        /// Go on with the other subjects when one is bad; list failures at the end.
        #[arg(long)]
        keep_going: bool,
        /// HCP folders (data.nii.gz, bvals, bvecs) or FSL prefixes (p.nii[.gz], p.bval, p.bvec).
        subjects: Vec<String>,
    },
    /// Writes HCP-shaped phantom subjects.
    Phantom {
        /// Volume shape.
        #[arg(long, num_args = 3, value_names = ["X", "Y", "Z"], default_values_t = [145, 174, 145])]
        shape: Vec<usize>,
        /// Number of b0 volumes (b = 5).
        #[arg(long, default_value_t = 18)]
        b0: usize,
        /// Directions per shell.
        #[arg(long, default_value_t = 90)]
        dirs: usize,
        /// b-values of the shells.
        #[arg(long, value_delimiter = ',', default_values_t = [1000.0, 2000.0, 3000.0])]
        shells: Vec<f64>,
        /// White-matter S0 over the noise's sigma.
        #[arg(long, default_value_t = 20.0)]
        snr: f64,
        /// Seed (subject i uses seed + i).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Number of subjects.
        #[arg(long, default_value_t = 1)]
        subjects: usize,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The phantom `neuro run` makes when given no subject: small enough for
/// a laptop run of a few seconds.
fn demo_spec() -> PhantomSpec {
    PhantomSpec {
        shape: [48, 56, 48],
        b0: 3,
        dirs: 10,
        shells: vec![1000.0, 2000.0, 3000.0],
        snr: 20.0,
        seed: 0,
    }
}

fn run(
    engine: &EngineArgs,
    out: &std::path::Path,
    save_denoised: bool,
    keep_going: bool,
    args: Vec<String>,
) -> Result<(), String> {
    let mut steps = Steps::new();
    let mut args = args;
    if args.is_empty() {
        let dir = out.join("phantom-input");
        let start = Instant::now();
        let made = write_subjects(&demo_spec(), 1, &dir).map_err(|e| e.to_string())?;
        steps.record("make phantom", start.elapsed().as_secs_f64());
        eprintln!(
            "neuro: no subject given; wrote a {:?} phantom to {}",
            demo_spec().shape,
            dir.display()
        );
        args = made.iter().map(|p| p.display().to_string()).collect();
    }
    // Every subject is checked before any work starts.
    let mut subjects: Vec<Subject> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for a in &args {
        match subject::resolve(a) {
            Ok(s) => subjects.push(s),
            Err(e) if keep_going => failures.push(e),
            Err(e) => return Err(e),
        }
    }
    subject::dedupe_names(&mut subjects);
    if !subjects.is_empty() {
        let ctx = engine.context("neuro").map_err(|e| e.to_string())?;
        let results =
            pipeline(&ctx, &subjects, save_denoised, &mut steps).map_err(|e| e.to_string())?;
        let start = Instant::now();
        for r in &results {
            let s = &subjects[r.subject];
            match output::write_subject(out, s, r) {
                Ok(dir) => eprintln!("neuro: {}: wrote {}", s.name, dir.display()),
                Err(e) if keep_going => failures.push(format!("subject {}: {e}", s.name)),
                Err(e) => return Err(format!("subject {}: {e}", s.name)),
            }
        }
        steps.record("write", start.elapsed().as_secs_f64());
        ctx.stop();
    }
    eprint!("{}", steps.table());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} subject(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run {
            engine,
            out,
            save_denoised,
            keep_going,
            subjects,
        } => run(&engine, &out, save_denoised, keep_going, subjects),
        Command::Phantom {
            shape,
            b0,
            dirs,
            shells,
            snr,
            seed,
            subjects,
            out,
        } => {
            let spec = PhantomSpec {
                shape: [shape[0], shape[1], shape[2]],
                b0,
                dirs,
                shells,
                snr,
                seed,
            };
            write_subjects(&spec, subjects, &out)
                .map(|dirs| {
                    for d in dirs {
                        println!("{}", d.display());
                    }
                })
                .map_err(|e| e.to_string())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("neuro: {e}");
            ExitCode::FAILURE
        }
    }
}
