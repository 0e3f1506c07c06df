//! The `ember` command line.

use clap::{Parser, Subcommand};
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
        /// Master URL: local[N], local[*], local-cluster[N,C,M].
        #[arg(long, default_value = "local[*]")]
        master: String,
        /// Configuration `key=value`, repeatable.
        #[arg(long = "conf")]
        conf: Vec<String>,
        /// The application binary.
        app: std::path::PathBuf,
        /// Arguments for the application.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Submit {
            master,
            conf,
            app,
            args,
        } => {
            if let Err(e) = ember_driver::MasterUrl::parse(&master) {
                eprintln!("ember submit: {e}");
                return ExitCode::from(2);
            }
            let mut cmd = std::process::Command::new(&app);
            cmd.args(&args).env("EMBER_MASTER", &master);
            for pair in &conf {
                let Some((k, v)) = pair.split_once('=') else {
                    eprintln!("ember submit: --conf {pair:?}: expected key=value");
                    return ExitCode::from(2);
                };
                // Spark-style keys travel as EMBER_* variables the
                // application's context reads.
                let Some(rest) = k.trim().strip_prefix("ember.") else {
                    eprintln!("ember submit: --conf {k:?}: keys start with `ember.`");
                    return ExitCode::from(2);
                };
                cmd.env(
                    format!("EMBER_{}", rest.replace('.', "_").to_ascii_uppercase()),
                    v.trim(),
                );
            }
            match cmd.status() {
                Ok(s) => ExitCode::from(s.code().unwrap_or(1) as u8),
                Err(e) => {
                    eprintln!("ember submit: {}: {e}", app.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}
