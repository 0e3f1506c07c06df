//! The neuro pipeline survives losing an executor in the middle of
//! denoising: on a small phantom, a `local-cluster[3,1,512]` run whose
//! executor is killed (SIGKILL) while the denoising stage runs writes the
//! same outputs, bit for bit, as a clean `local[2]` run.

use ember_driver::Context;
use ember_examples::neuro::maps::{computed, Map};
use ember_examples::neuro::output::write_subject as write_outputs;
use ember_examples::neuro::{pipeline, subject, PipelineOptions, SubjectResult};
use ember_examples::phantom::{write_subject, PhantomSpec};
use ember_examples::steps::Steps;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The shuffle the denoising stage writes: the pipeline's third (after
/// the per-volume `partition_by` and the mask's `group_by_key`), so its
/// first map output marks a denoising stage under way.
const DENOISE_SHUFFLE: &str = "shuffle_2_";

fn run(ctx: &Context, subject_dir: &Path, out: &Path) -> (SubjectResult, Steps) {
    let s = subject::resolve(subject_dir.to_str().unwrap()).unwrap();
    let mut steps = Steps::new();
    let options = PipelineOptions {
        maps: computed(&Map::ALL),
        ..PipelineOptions::default()
    };
    let run = pipeline(ctx, std::slice::from_ref(&s), &options, &mut steps).unwrap();
    let r = run.result(0).unwrap().unwrap();
    write_outputs(out, &s, &r, &Map::ALL).unwrap();
    (r, steps)
}

/// Denoising map outputs written so far, by the executor folder holding
/// them (`executor-<id>`), under the application folders in `local`.
fn denoise_outputs(local: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(apps) = std::fs::read_dir(local) else {
        return found;
    };
    for app in apps.flatten() {
        let Ok(executors) = std::fs::read_dir(app.path()) else {
            continue;
        };
        for ex in executors.flatten() {
            let name = ex.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix("executor-") else {
                continue;
            };
            for f in std::fs::read_dir(ex.path()).into_iter().flatten().flatten() {
                let file = f.file_name().to_string_lossy().into_owned();
                if file.starts_with(DENOISE_SHUFFLE) && file.ends_with(".data") {
                    found.push((id.to_string(), f.path()));
                }
            }
        }
    }
    found
}

#[test]
fn killing_an_executor_during_denoising_writes_the_clean_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let phantom = dir.path().join("phantom");
    let spec = PhantomSpec {
        shape: [24, 28, 24],
        b0: 2,
        dirs: 6,
        shells: vec![1000.0, 2000.0],
        snr: 20.0,
        seed: 11,
    };
    let info = write_subject(&spec, &phantom).unwrap();
    let volumes = info.volumes;

    let clean_out = dir.path().join("clean");
    let (clean, clean_steps) = run(&Context::new("local[2]").unwrap(), &phantom, &clean_out);
    println!("clean run, local[2]:\n{}", clean_steps.table());

    let local = dir.path().join("local");
    let ctx = Context::builder()
        .master("local-cluster[3,1,512]")
        .conf("ember.local.dir", local.to_str().unwrap())
        .conf("ember.ui.enabled", "false")
        .conf("ember.ui.showConsoleProgress", "false")
        .build()
        .unwrap();
    let faulty_out = dir.path().join("faulty");
    let start = Instant::now();
    let ((faulty, steps), (victim, outputs_then)) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            // The first denoised volume's map output: denoising is under
            // way, most volumes still to go.
            let mut first = None;
            let deadline = Instant::now() + Duration::from_secs(60);
            while first.is_none() && Instant::now() < deadline {
                first = denoise_outputs(&local).into_iter().next();
                std::thread::sleep(Duration::from_millis(5));
            }
            let (id, _) = first.expect("the denoising stage never wrote an output");
            let pid = ctx
                .executor_pids()
                .into_iter()
                .find(|(e, _)| e.0 == id)
                .map(|(_, p)| p)
                .expect("the executor holding it is alive");
            let outputs_then = denoise_outputs(&local).len();
            let status = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            (pid, outputs_then)
        });
        let r = run(&ctx, &phantom, &faulty_out);
        (r, killer.join().unwrap())
    });
    println!(
        "local-cluster[3,1,512], executor pid {victim} killed with {outputs_then} of {volumes} volumes denoised ({:.1}s):\n{}",
        start.elapsed().as_secs_f64(),
        steps.table()
    );
    assert!(
        outputs_then < volumes,
        "the kill came before denoising ended: {outputs_then} of {volumes}"
    );
    assert!(
        !ctx.executor_pids().iter().any(|(_, p)| *p == victim),
        "the victim was lost"
    );
    let report = ctx
        .job_reports()
        .into_iter()
        .max_by_key(|r| r.tasks_launched)
        .unwrap();
    println!(
        "denoise + fit job: stages {:?}, {} tasks ({} failed)",
        report.stages_run, report.tasks_launched, report.tasks_failed
    );

    assert_eq!(faulty.mask, clean.mask, "mask");
    assert_eq!(faulty.maps, clean.maps, "every tensor map");
    let mut files = vec!["mask.nii.gz".to_string(), "fa.png".into(), "qa.png".into()];
    files.extend(Map::ALL.iter().map(|m| format!("{}.nii.gz", m.name())));
    for file in files {
        let a = std::fs::read(clean_out.join("phantom").join(&file)).unwrap();
        let b = std::fs::read(faulty_out.join("phantom").join(&file)).unwrap();
        assert!(a == b, "{file} differs from the clean run's");
    }
}
