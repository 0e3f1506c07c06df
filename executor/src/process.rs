//! The executor process: the driver's own binary started with the
//! executor variables ([`env_vars`]) set. A constructor that runs before
//! `main` notices them and runs the executor loop instead of the program,
//! so driver programs need no special entry point.

use crate::block_server::{self, TcpFetcher};
use crate::executor::Executor;
use crate::protocol::{env_vars, DriverMessage, ExecutorMessage};
use crossbeam::channel::{bounded, Sender};
use ember_core::codec::{recv, send};
use ember_core::{BroadcastId, BuildId, EmberError, ExecutorId, Result};
use ember_rdd::TaskEnv;
use ember_shuffle::ShuffleFiles;
use ember_storage::{BlockManager, MemoryBudget};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a task waits for a broadcast value from the driver.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(300);

// SAFETY (of running before main): the body only reads environment
// variables unless they are set, and when they are, it runs the executor
// and exits the process without returning to the program's `main`. Rust's
// standard library is usable from ELF constructors on Linux; exercised by
// every local-cluster test.
#[ctor::ctor(unsafe)]
fn divert_executor_process() {
    if std::env::var_os(env_vars::DRIVER).is_none() {
        return;
    }
    // Rust's runtime ignores SIGPIPE before `main`, so a write to a closed
    // pipe or socket is an EPIPE error; this process never reaches `main`,
    // so it does the same, or a child that exits early (`pipe` into
    // `head`) or a peer that hangs up would kill the executor.
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // preconditions; no other thread exists yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // The program's `main` (and any subscriber it would install) never
    // runs here, so the executor's warnings need Ember's.
    ember_core::logging::init(ember_core::logging::DEFAULT_FILTER);
    let code = match std::panic::catch_unwind(run_from_env) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("ember executor: {e}");
            1
        }
        Err(_) => 1,
    };
    std::process::exit(code);
}

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| EmberError::Conf {
        key: name.into(),
        message: "not set".into(),
    })
}

/// Runs the executor described by the environment until the driver
/// disconnects or says to stop.
pub fn run_from_env() -> Result<()> {
    let driver = var(env_vars::DRIVER)?;
    let id = ExecutorId(var(env_vars::ID)?);
    let cores: usize = var(env_vars::CORES)?
        .parse()
        .map_err(|_| EmberError::Conf {
            key: env_vars::CORES.into(),
            message: "not a number".into(),
        })?;
    let dir = PathBuf::from(var(env_vars::DIR)?);
    let heartbeat = std::env::var(env_vars::HEARTBEAT_MS)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_HEARTBEAT);
    let memory: u64 = std::env::var(env_vars::MEMORY)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let fraction: f64 = std::env::var(env_vars::STORAGE_FRACTION)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.5);
    let timeout = std::env::var(env_vars::TIMEOUT_MS)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT);
    let budget = Arc::new(MemoryBudget::new(
        ember_core::conf::usable_memory(memory),
        fraction,
    ));
    let link = Link { heartbeat, timeout };
    let result = run(&driver, id, cores, dir.clone(), link, budget);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Tasks waiting for a broadcast value from the driver, by id.
type BroadcastWaiters = HashMap<BroadcastId, Vec<Sender<Result<Vec<u8>>>>>;

/// Heartbeat interval when the driver does not set one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the driver counts as gone when it does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How this executor keeps in touch with its driver.
struct Link {
    /// Interval of heartbeats to the driver.
    heartbeat: Duration,
    /// Silence after which the driver, or a block server, counts as gone.
    timeout: Duration,
}

fn run(
    driver: &str,
    id: ExecutorId,
    cores: usize,
    dir: PathBuf,
    link: Link,
    budget: Arc<MemoryBudget>,
) -> Result<()> {
    let files = ShuffleFiles::new(&dir);
    // Standalone mode: a shared secret, the worker's host, a worker to watch.
    let secret = ember_core::auth::Secret::from_env();
    crate::worker_watch::watch_worker_from_env();
    let mut reader = ember_core::net::connect(driver, link.timeout)
        .map_err(|e| EmberError::Network(format!("cannot reach the driver at {driver}: {e}")))?;
    // Heartbeats go out every interval: a driver whose link is cut stops
    // acknowledging them, and the connection fails after the timeout, so
    // this executor exits instead of lingering.
    ember_core::net::fail_when_silent(&reader, link.timeout);
    let _ = reader.set_nodelay(true);
    // The block server binds what the worker was told, else the address
    // this executor reached the driver from, and advertises the latter
    // when bound to every interface.
    let toward_driver = reader
        .local_addr()
        .map_err(|e| EmberError::Network(format!("local address toward the driver: {e}")))?
        .ip()
        .to_string();
    let bind = std::env::var(env_vars::HOST).unwrap_or_else(|_| toward_driver.clone());
    let advertised = if ember_core::net::is_wildcard(&bind) {
        toward_driver
    } else {
        bind.clone()
    };
    let blocks = Arc::new(BlockManager::new(dir.join("blocks"), budget));
    let served = block_server::Served {
        files: files.clone(),
        blocks: blocks.clone(),
    };
    let block_address = block_server::start(served, &bind, &advertised, secret.clone())?;
    ember_core::auth::connect_tcp(&mut reader, secret.as_ref())?;
    let writer = Arc::new(Mutex::new(
        reader
            .try_clone()
            .map_err(|e| EmberError::Network(e.to_string()))?,
    ));
    let send_msg = {
        let writer = writer.clone();
        move |msg: &ExecutorMessage| -> Result<()> {
            send(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()), msg)
        }
    };
    send_msg(&ExecutorMessage::Register {
        id: id.clone(),
        build: BuildId::current().clone(),
        cores,
        block_address: block_address.clone(),
        pid: std::process::id(),
    })?;
    match recv::<DriverMessage>(&mut reader, "registration reply")? {
        Some(DriverMessage::Registered) => {}
        Some(DriverMessage::Refused(e)) => return Err(e),
        other => {
            return Err(EmberError::Network(format!(
                "unexpected registration reply {other:?}"
            )))
        }
    }

    {
        let send_msg = send_msg.clone();
        std::thread::Builder::new()
            .name("ember-heartbeat".into())
            .spawn(move || {
                while send_msg(&ExecutorMessage::Heartbeat).is_ok() {
                    std::thread::sleep(link.heartbeat);
                }
            })
            .map_err(|e| EmberError::Other(format!("start heartbeat thread: {e}")))?;
    }

    let waiting: Arc<Mutex<BroadcastWaiters>> = Arc::default();
    {
        let waiting = waiting.clone();
        let send_msg = send_msg.clone();
        ember_rdd::broadcast::set_source(move |bid| {
            let (tx, rx) = bounded(1);
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(bid)
                .or_default()
                .push(tx);
            send_msg(&ExecutorMessage::GetBroadcast(bid))?;
            rx.recv_timeout(BROADCAST_TIMEOUT)
                .map_err(|_| EmberError::Network(format!("{bid}: no answer from the driver")))?
        });
    }

    let env = Arc::new(TaskEnv {
        executor_id: id,
        blocks,
        shuffle_files: files.clone(),
        block_address: Some(block_address),
        fetcher: Some(Arc::new(
            TcpFetcher::with_secret(secret).timeout(link.timeout),
        )),
    });
    let sink = {
        let send_msg = send_msg.clone();
        Arc::new(move |task, result| {
            // A lost driver ends the process through the reader below.
            let _ = send_msg(&ExecutorMessage::Status(task, result));
        })
    };
    let executor = Executor::start(env.clone(), cores, sink);
    let lost =
        |e: EmberError| EmberError::Network(format!("lost the driver at {driver}; exiting: {e}"));
    while let Some(msg) = recv::<DriverMessage>(&mut reader, "driver message").map_err(lost)? {
        match msg {
            DriverMessage::Stage(blob) => executor.add_stage(&blob),
            DriverMessage::Launch(desc) => executor.launch(desc),
            DriverMessage::KillTask(task) => executor.kill_task(task),
            DriverMessage::ForgetStage(blob) => executor.forget_stage(blob),
            DriverMessage::RemoveRdd(rdd) => {
                env.blocks.remove_rdd(rdd);
            }
            DriverMessage::RemoveShuffle(s) => files.remove_shuffle(s),
            DriverMessage::RemoveBroadcast(b) => ember_rdd::broadcast::forget(b),
            DriverMessage::Broadcast(bid, bytes) => {
                let senders = waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&bid)
                    .unwrap_or_default();
                for s in senders {
                    let _ = s.send(bytes.clone().map(|b| b.into_vec()));
                }
            }
            DriverMessage::Shutdown => break,
            DriverMessage::Registered | DriverMessage::Refused(_) => {}
        }
    }
    Ok(())
}
