//! Shared pieces of the example driver programs, and the neuroscience
//! pipeline ([`neuro`]) behind the `neuro` binary.

pub mod neuro;
pub mod phantom;
pub mod steps;

use clap::Args;
use ember_driver::{Context, Result};

/// The options every example takes: where to run and extra configuration.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Master URL: local[N], local[*], local-cluster[N,C,M].
    #[arg(long, env = "EMBER_MASTER", default_value = "local[*]")]
    pub master: String,
    /// Configuration `key=value`, repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

impl EngineArgs {
    /// Starts a context for these options.
    pub fn context(&self, app_name: &str) -> Result<Context> {
        Context::builder()
            .app_name(app_name)
            .master(&self.master)
            .conf_pairs(&self.conf)?
            .build()
    }
}
