//! `ember history`: serves past applications from their event logs.

use super::http::HttpServer;
use ember_core::{EmberError, Result};
use std::path::Path;

/// Serves the event logs in `dir` on `host:port`.
pub fn serve(_dir: &Path, _host: &str, _port: u16) -> Result<HttpServer> {
    Err(EmberError::Other("not yet".into()))
}
