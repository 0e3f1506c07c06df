//! Ctrl-C in a driver program: cancel the running jobs, stop every live
//! context (executor processes ended, local folders removed) and exit
//! with code 130, as a shell expects of a program stopped by SIGINT.
//!
//! The signal handler itself only writes a byte to a self-pipe (the
//! async-signal-safe part, done by `signal-hook`); a watcher thread reads
//! the pipe and does the work. The handler is installed once per process,
//! when the first context is built with `ember.driver.interruptHandler`
//! on (the default); executor processes never build a context, so they
//! keep the default action.

use crate::context::ContextInner;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

/// Exit code of a program stopped by SIGINT (128 + 2).
pub const EXIT_CODE: i32 = 130;

/// How long stopping may take before the process exits anyway.
const STOP_DEADLINE: Duration = Duration::from_millis(1500);

/// Set once Ctrl-C was pressed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Called by an action whose job ended: after Ctrl-C the action never
/// returns (its job was cancelled only because the program is exiting),
/// so the program cannot report the cancellation and exit with another
/// code first.
pub(crate) fn hold_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

/// The contexts to stop on Ctrl-C (weakly: a dropped context is gone).
fn live() -> &'static Mutex<Vec<Weak<ContextInner>>> {
    static LIVE: OnceLock<Mutex<Vec<Weak<ContextInner>>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

/// Registers a context to be stopped on Ctrl-C, installing the handler
/// the first time. A failure to install is logged, not returned: the
/// program then keeps SIGINT's default action.
pub(crate) fn watch(context: Weak<ContextInner>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if let Err(e) = install() {
            tracing::warn!("Ctrl-C will not stop Ember's executors cleanly: {e}");
        }
    });
    let mut live = live().lock().unwrap_or_else(|p| p.into_inner());
    live.retain(|c| c.strong_count() > 0);
    live.push(context);
}

fn install() -> std::io::Result<()> {
    let (mut read, write) = UnixStream::pair()?;
    // The handler must never block.
    write.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, write)?;
    std::thread::Builder::new()
        .name("ember-interrupt".into())
        .spawn(move || {
            let mut byte = [0u8];
            // Returns at the first signal (or if the pipe breaks).
            if read.read(&mut byte).is_ok_and(|n| n == 1) {
                stop_all();
            }
        })?;
    Ok(())
}

/// Cancels every live context's jobs, stops the contexts and exits.
fn stop_all() -> ! {
    INTERRUPTED.store(true, Ordering::SeqCst);
    eprintln!("Interrupted: cancelling jobs and stopping executors");
    // Whatever happens while stopping, the program ends in time.
    let _ = std::thread::Builder::new()
        .name("ember-interrupt-deadline".into())
        .spawn(|| {
            std::thread::sleep(STOP_DEADLINE);
            std::process::exit(EXIT_CODE);
        });
    let contexts: Vec<_> = std::mem::take(&mut *live().lock().unwrap_or_else(|p| p.into_inner()))
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for ctx in &contexts {
        ctx.cancel_all("the driver program was interrupted (Ctrl-C)");
    }
    for ctx in &contexts {
        ctx.stop();
    }
    std::process::exit(EXIT_CODE);
}
