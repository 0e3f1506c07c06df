//! The `ember` command line: `submit` a driver program, run a standalone
//! `master` or `worker`, or serve past applications with `history`.

use clap::{Parser, Subcommand};
use ember_driver::deploy::{Master, MasterOptions, Worker, WorkerOptions};
use ember_driver::submit::{env_name, resolve};
use ember_driver::{EmberConf, MasterUrl};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Ember: an in-memory RDD cluster computing framework"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a driver program: `ember submit --master URL APP [ARGS]...`.
    Submit {
        /// Master URL: `local[N]`, `local[*]`, `local-cluster[N,C,M]`,
        /// `ember://host:port`.
        // The same words without rustdoc's backticks for `--help`.
        #[arg(
            long,
            help = "Master URL: local[N], local[*], local-cluster[N,C,M], ember://host:port"
        )]
        master: Option<String>,
        /// Application name (`ember.app.name`).
        #[arg(long)]
        name: Option<String>,
        /// Memory per executor, e.g. 2g (`ember.executor.memory`).
        #[arg(long)]
        executor_memory: Option<String>,
        /// Cores per executor (`ember.executor.cores`; default in standalone
        /// mode: all free cores of a worker).
        #[arg(long)]
        executor_cores: Option<usize>,
        /// Cores over all executors (`ember.cores.max`).
        #[arg(long)]
        total_executor_cores: Option<usize>,
        /// Defaults file (default: $EMBER_CONF_DIR/ember-defaults.conf, or
        /// one next to this binary).
        #[arg(long)]
        properties_file: Option<PathBuf>,
        /// Configuration `key=value`, repeatable.
        #[arg(long = "conf", value_name = "KEY=VALUE")]
        conf: Vec<String>,
        /// Prints the resolved configuration (secrets hidden).
        #[arg(long)]
        verbose: bool,
        /// The application binary.
        app: PathBuf,
        /// Arguments for the application.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs a standalone master.
    Master {
        /// Host to bind: this host's address for workers and drivers on
        /// other machines, or 0.0.0.0 for every interface (the first
        /// non-loopback address is advertised).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port for workers and drivers (0: any free one).
        #[arg(long, default_value_t = 7077)]
        port: u16,
        /// Web UI port (0: any free one).
        #[arg(long, default_value_t = 8080)]
        webui_port: u16,
        /// Defaults file.
        #[arg(long)]
        properties_file: Option<PathBuf>,
        /// Configuration `key=value`, repeatable.
        #[arg(long = "conf", value_name = "KEY=VALUE")]
        conf: Vec<String>,
    },
    /// Runs a standalone worker for the master at `ember://host:port`.
    Worker {
        /// The master's URL.
        master: String,
        /// Host to bind, executors' block servers too (default: the address
        /// of the interface that routes to the master; 0.0.0.0: every
        /// interface, advertising that address).
        #[arg(long)]
        host: Option<String>,
        /// Cores to offer (default: all).
        #[arg(long)]
        cores: Option<usize>,
        /// Memory to offer, e.g. 4g (default: the machine's less 1 GiB).
        #[arg(long)]
        memory: Option<String>,
        /// Folder for binaries and executor folders.
        #[arg(long, default_value = "work")]
        work_dir: PathBuf,
        /// Web UI port (0: any free one).
        #[arg(long, default_value_t = 8081)]
        webui_port: u16,
        /// Defaults file.
        #[arg(long)]
        properties_file: Option<PathBuf>,
        /// Configuration `key=value`, repeatable.
        #[arg(long = "conf", value_name = "KEY=VALUE")]
        conf: Vec<String>,
    },
    /// Serves the event logs of past applications with the application UI.
    History {
        /// Folder of event logs (`ember.eventLog.dir`).
        #[arg(long)]
        dir: PathBuf,
        /// Host to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port (0: any free one).
        #[arg(long, default_value_t = 18080)]
        port: u16,
    },
}

/// The daemons log at `info` unless `RUST_LOG` or `EMBER_LOG` says
/// otherwise: registrations, placements and lost workers are what their
/// operators read.
fn init_logging() {
    ember_core::logging::init("info");
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("ember {what}: {e}");
    ExitCode::from(2)
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Submit {
            master,
            name,
            executor_memory,
            executor_cores,
            total_executor_cores,
            properties_file,
            conf,
            verbose,
            app,
            args,
        } => {
            let flags = [
                ("ember.master", master),
                ("ember.app.name", name),
                ("ember.executor.memory", executor_memory),
                (
                    "ember.executor.cores",
                    executor_cores.map(|c| c.to_string()),
                ),
                (
                    "ember.cores.max",
                    total_executor_cores.map(|c| c.to_string()),
                ),
            ];
            let resolved = match resolve(properties_file.as_deref(), &conf, &flags) {
                Ok(c) => c,
                Err(e) => return fail("submit", e),
            };
            let master = resolved
                .get("ember.master")
                .unwrap_or("local[*]")
                .to_string();
            if let Err(e) = MasterUrl::parse(&master) {
                return fail("submit", e);
            }
            let mut cmd = std::process::Command::new(&app);
            cmd.args(&args);
            for (k, v) in resolved.iter() {
                let name = match env_name(k) {
                    Ok(n) => n,
                    Err(e) => return fail("submit", e),
                };
                if verbose {
                    let shown = if k.contains("secret") { "*****" } else { v };
                    eprintln!("ember submit: {k}={shown}");
                }
                cmd.env(name, v);
            }
            match cmd.status() {
                Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
                Err(e) => fail("submit", format!("{}: {e}", app.display())),
            }
        }
        Command::Master {
            host,
            port,
            webui_port,
            properties_file,
            conf,
        } => {
            init_logging();
            let conf = match resolve(properties_file.as_deref(), &conf, &[]) {
                Ok(c) => c,
                Err(e) => return fail("master", e),
            };
            let master = match Master::start(MasterOptions {
                host,
                port,
                webui_port: Some(webui_port),
                conf,
            }) {
                Ok(m) => m,
                Err(e) => return fail("master", e),
            };
            println!("ember master: listening on {}", master.url());
            if let Some(ui) = master.webui_url() {
                println!("ember master: web UI at {ui}");
            }
            park_forever()
        }
        Command::Worker {
            master,
            host,
            cores,
            memory,
            work_dir,
            webui_port,
            properties_file,
            conf,
        } => {
            init_logging();
            let address = match MasterUrl::parse(&master) {
                Ok(MasterUrl::Standalone { address }) => address,
                Ok(_) => return fail("worker", "the master URL must be ember://host:port"),
                Err(e) => return fail("worker", e),
            };
            let conf: EmberConf = match resolve(properties_file.as_deref(), &conf, &[]) {
                Ok(c) => c,
                Err(e) => return fail("worker", e),
            };
            let memory_mib = match memory {
                Some(m) => match ember_core::conf::parse_bytes(&m) {
                    Ok(b) => b >> 20,
                    Err(e) => return fail("worker", format!("--memory: {e}")),
                },
                None => ember_core::conf::physical_memory()
                    .map(|m| (m >> 20).saturating_sub(1024).max(1024))
                    .unwrap_or(1024),
            };
            let cores = cores.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            let worker = match Worker::start(WorkerOptions {
                master: address,
                host,
                cores,
                memory_mib,
                work_dir,
                webui_port: Some(webui_port),
                conf,
            }) {
                Ok(w) => w,
                Err(e) => return fail("worker", e),
            };
            println!(
                "ember worker: {} offers {cores} cores, {memory_mib} MiB",
                worker.id()
            );
            if let Some(ui) = worker.webui_url() {
                println!("ember worker: web UI at {ui}");
            }
            park_forever()
        }
        Command::History { dir, host, port } => {
            init_logging();
            match ember_driver::ui::history::serve(&dir, &host, port) {
                Ok(server) => {
                    println!(
                        "ember history: serving {} at {}",
                        dir.display(),
                        server.url()
                    );
                    park_forever()
                }
                Err(e) => fail("history", e),
            }
        }
    }
}
