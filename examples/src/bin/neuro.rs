//! `neuro`: the diffusion-MRI pipeline of Mehta et al. on Ember.
//!
//! `neuro run [--master URL] [--conf k=v]... --out OUT [INPUT]...` masks,
//! denoises and fits a tensor for every subject and writes the mask and
//! DIPY's tensor maps per subject, a QA image each, and `report.html` /
//! `run.json` for the run. An INPUT is an HCP folder, an FSL prefix, or a
//! BIDS dataset root. With no INPUT it first writes one small phantom
//! subject and runs on that. `neuro phantom ...` writes HCP-shaped
//! synthetic subjects.

use clap::{Parser, Subcommand};
use ember_examples::neuro::maps::{computed, Map};
use ember_examples::neuro::report::{EngineTotals, RunReport, SubjectReport};
use ember_examples::neuro::subject::{self, InputOptions, SubjectFiles};
use ember_examples::neuro::{bids, output, pipeline, PipelineOptions, Subject, NOT_RUN};
use ember_examples::phantom::{write_subjects, PhantomSpec};
use ember_examples::steps::Steps;
use ember_examples::EngineArgs;
use ember_image::DEFAULT_B0_THRESHOLD;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "The diffusion-MRI pipeline (mask, denoise, tensor fit) on Ember")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `neuro run` reads and writes.
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Output folder.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Also write each subject's denoised image.
    #[arg(long)]
    save_denoised: bool,
    /// Go on with the other subjects when one fails; list failures at the end.
    #[arg(long)]
    keep_going: bool,
    /// Tensor maps to write (the mask is always written).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Map::DEFAULT)]
    save_metrics: Vec<Map>,
    /// Volumes with b ≤ this are b0.
    #[arg(long, default_value_t = DEFAULT_B0_THRESHOLD)]
    b0_threshold: f64,
    /// Fit the tensor on shells with b ≤ this only (denoising uses every volume).
    #[arg(long)]
    max_bval: Option<f64>,
    /// Use the mask that comes with the data (HCP's nodif_brain_mask) instead of computing one.
    #[arg(long)]
    mask_from_input: bool,
    /// Output name of each INPUT that is not a BIDS dataset, in order.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// A file listing subjects, one `PATH [NAME]` a line.
    #[arg(long, value_name = "FILE")]
    subjects_file: Option<PathBuf>,
    /// Participants of a BIDS dataset to run (labels, with or without `sub-`); all by default.
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    participant_label: Vec<String>,
    /// HCP folders (data.nii.gz, bvals, bvecs), FSL prefixes (p.nii[.gz], p.bval, p.bvec) or BIDS dataset roots.
    inputs: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the pipeline over subjects.
    Run(RunArgs),
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

/// A subject found, or why it could not be: `(name, reason)`.
type Found = Result<SubjectFiles, (String, String)>;

/// Every subject of the run, in order: positional inputs (BIDS datasets
/// expanded into their runs), then the subjects file's.
fn gather(args: &RunArgs, inputs: &[String]) -> Result<Vec<Found>, String> {
    let is_bids = |i: &String| bids::is_dataset_root(Path::new(i));
    let plain = inputs.iter().filter(|i| !is_bids(i)).count();
    if !args.names.is_empty() && args.names.len() != plain {
        return Err(format!(
            "--name given {} time(s) for {plain} input(s) that are not BIDS datasets",
            args.names.len()
        ));
    }
    let mut names = args.names.iter();
    let mut found = Vec::new();
    for input in inputs {
        if is_bids(input) {
            found.extend(bids::discover(Path::new(input), &args.participant_label)?);
            continue;
        }
        let name = names.next().cloned();
        found.push(named(subject::locate(input), input, name));
    }
    if let Some(list) = &args.subjects_file {
        for (path, name) in subject::read_list(list)? {
            found.push(named(subject::locate(&path), &path, name));
        }
    }
    Ok(found)
}

fn named(located: Result<SubjectFiles, String>, input: &str, name: Option<String>) -> Found {
    match located {
        Ok(mut files) => {
            if let Some(name) = name {
                files.name = name;
            }
            Ok(files)
        }
        Err(why) => Err((name.unwrap_or_else(|| input.to_string()), why)),
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    let mut steps = Steps::new();
    let out = &args.out;
    let mut inputs = args.inputs.clone();
    if inputs.is_empty() && args.subjects_file.is_none() {
        let dir = out.join("phantom-input");
        let start = Instant::now();
        let made = write_subjects(&demo_spec(), 1, &dir).map_err(|e| e.to_string())?;
        steps.record("make phantom", start.elapsed().as_secs_f64());
        eprintln!(
            "neuro: no subject given; wrote a {:?} phantom to {}",
            demo_spec().shape,
            dir.display()
        );
        inputs = made.iter().map(|p| p.display().to_string()).collect();
    }
    let options = InputOptions {
        b0_threshold: args.b0_threshold,
        max_bval: args.max_bval,
        mask_from_input: args.mask_from_input,
    };
    // Every subject is found and checked before any work starts; the
    // report keeps input order, failures included.
    let mut found = gather(&args, &inputs)?;
    subject::dedupe_names(
        found
            .iter_mut()
            .filter_map(|f| f.as_mut().ok())
            .map(|f| &mut f.name),
    );
    let mut reports: Vec<Option<SubjectReport>> = Vec::new();
    let mut subjects: Vec<(usize, Subject)> = Vec::new();
    for (i, f) in found.into_iter().enumerate() {
        let checked = match f {
            Ok(files) => {
                let (name, image) = (files.name.clone(), files.image.clone());
                subject::check(files, &options).map_err(|why| (name, Some(image), why))
            }
            Err((name, why)) => Err((name, None, why)),
        };
        match checked {
            Ok(s) => {
                subjects.push((i, s));
                reports.push(None);
            }
            Err((_, _, why)) if !args.keep_going => return Err(why),
            Err((name, image, why)) => reports.push(Some(SubjectReport::failed(&name, image, why))),
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
    if subjects.iter().any(|(_, s)| s.bids.is_some()) {
        let roots: Vec<PathBuf> = inputs
            .iter()
            .filter(|i| bids::is_dataset_root(Path::new(i)))
            .map(PathBuf::from)
            .collect();
        let description = bids::derivatives_description(&roots);
        ember_examples::neuro::report::write_atomic(
            &out.join("dataset_description.json"),
            description.to_string().as_bytes(),
        )?;
    }
    let mut first_failure: Option<String> = None;
    let mut engine = EngineTotals::default();
    if !subjects.is_empty() {
        let ctx = args.engine.context("neuro").map_err(|e| e.to_string())?;
        let list: Vec<Subject> = subjects.iter().map(|(_, s)| s.clone()).collect();
        let pipeline_options = PipelineOptions {
            maps: computed(&args.save_metrics),
            keep_denoised: args.save_denoised,
            keep_going: args.keep_going,
        };
        let run =
            pipeline(&ctx, &list, &pipeline_options, &mut steps).map_err(|e| e.to_string())?;
        let start = Instant::now();
        for (s, (i, subject)) in subjects.iter().enumerate() {
            let outcome = run.result(s).map_err(|e| e.to_string())?.and_then(|r| {
                let files = output::write_subject(out, subject, &r, &args.save_metrics)?;
                Ok((r, files))
            });
            reports[*i] = Some(match outcome {
                Ok((r, files)) => {
                    eprintln!("neuro: {}: wrote {} files", subject.name, files.len());
                    let relative = |p: &PathBuf| p.strip_prefix(out).unwrap_or(p).to_path_buf();
                    let qa = files
                        .iter()
                        .find(|p| p.to_string_lossy().contains("qa"))
                        .map(relative);
                    SubjectReport {
                        name: subject.name.clone(),
                        image: Some(subject.image.clone()),
                        metadata: subject.metadata.clone(),
                        status: "ok",
                        reason: None,
                        mask_voxels: Some(r.mask_voxels()),
                        sigmas: r.sigmas,
                        seconds: r.seconds,
                        outputs: files.iter().map(relative).collect(),
                        qa,
                    }
                }
                Err(why) if why == NOT_RUN => {
                    SubjectReport::not_run(&subject.name, Some(subject.image.clone()), why)
                }
                Err(why) => {
                    // Load errors name the file already; the others get it.
                    let image = subject.image.display().to_string();
                    let why = if why.contains(&image) {
                        why
                    } else {
                        format!("{why} ({image})")
                    };
                    first_failure.get_or_insert_with(|| format!("subject {}: {why}", subject.name));
                    SubjectReport::failed(&subject.name, Some(subject.image.clone()), why)
                }
            });
        }
        steps.record("write", start.elapsed().as_secs_f64());
        for job in ctx.job_reports() {
            let m = &job.metrics;
            engine.shuffle_bytes_written += m.shuffle_bytes_written;
            engine.spill_memory_bytes += m.spill_memory_bytes;
            engine.spill_disk_bytes += m.spill_disk_bytes;
            engine.peak_execution_memory =
                engine.peak_execution_memory.max(m.peak_execution_memory);
        }
        ctx.stop();
    }
    let report = RunReport {
        master: args.engine.master.clone(),
        subjects: reports.into_iter().flatten().collect(),
        steps: steps.rows().to_vec(),
        engine,
    };
    report.write(out)?;
    eprint!("{}", steps.table());
    if report.subjects.len() > 1 || report.failed() > 0 {
        eprint!("{}", report.summary());
    }
    match (first_failure, report.failed()) {
        (Some(first), _) if !args.keep_going => Err(first),
        (_, 0) => Ok(()),
        (_, n) => Err(format!(
            "{n} of {} subject(s) failed (see {})",
            report.subjects.len(),
            out.join("report.html").display()
        )),
    }
}
fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run(args) => run(args),
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
