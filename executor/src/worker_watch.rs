//! An executor launched by a standalone worker exits when that worker is
//! gone, as Spark's `WorkerWatcher` does: a worker killed with `kill -9`
//! must not leave executors running that the master no longer accounts
//! for. The executor is the worker's child, so the worker's death shows as
//! a change of parent process.

use crate::protocol::env_vars;
use std::time::Duration;

/// How often the parent is checked.
const PERIOD: Duration = Duration::from_millis(200);

/// Starts a thread that exits the process once its parent is no longer
/// the worker named by [`env_vars::WORKER_PID`]; does nothing when that
/// variable is unset (local-cluster executors).
pub fn watch_worker_from_env() {
    let Some(worker) = std::env::var(env_vars::WORKER_PID)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("ember-worker-watch".into())
        .spawn(move || loop {
            if std::os::unix::process::parent_id() != worker {
                eprintln!("ember executor: worker process {worker} is gone; exiting");
                std::process::exit(3);
            }
            std::thread::sleep(PERIOD);
        });
}
