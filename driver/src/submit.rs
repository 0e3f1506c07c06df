//! Configuration for `ember submit` and the daemons, with Spark's
//! precedence: the defaults file (`ember-defaults.conf`) < `EMBER_*`
//! environment variables < `--conf` flags < dedicated flags such as
//! `--executor-memory`. The application's own settings (its
//! `ContextBuilder`) win over all of these, because the launcher hands
//! the result to it as `EMBER_*` variables, which a context reads first
//! and then overlays with the builder's values.

use ember_core::{EmberConf, EmberError, Result};
use std::path::{Path, PathBuf};

/// Name of the defaults file.
pub const DEFAULTS_FILE: &str = "ember-defaults.conf";
/// Folder searched for [`DEFAULTS_FILE`] first.
pub const CONF_DIR_ENV: &str = "EMBER_CONF_DIR";

/// The defaults file in force: `explicit` if given, else
/// `$EMBER_CONF_DIR/ember-defaults.conf`, else one next to the running
/// `ember` binary or in `conf/` beside its folder.
pub fn defaults_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(CONF_DIR_ENV) {
        let p = PathBuf::from(dir).join(DEFAULTS_FILE);
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join(DEFAULTS_FILE),
        dir.join("..").join("conf").join(DEFAULTS_FILE),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Resolves configuration: defaults file, then environment, then
/// `--conf` pairs, then `flags` (dedicated options, already as keys).
pub fn resolve(
    properties_file: Option<&Path>,
    conf_pairs: &[String],
    flags: &[(&str, Option<String>)],
) -> Result<EmberConf> {
    let mut conf = EmberConf::new();
    if let Some(file) = defaults_file(properties_file) {
        conf.load_file(&file)?;
    }
    conf.merge(&ember_core_env());
    for pair in conf_pairs {
        conf.set_pair(pair)?;
    }
    for (key, value) in flags {
        if let Some(v) = value {
            conf.set(key, v.clone());
        }
    }
    Ok(conf)
}

fn ember_core_env() -> EmberConf {
    let mut env = EmberConf::from_env();
    // Not settings: the launcher's own variables.
    let mut clean = EmberConf::new();
    for (k, v) in env.iter() {
        if k != "ember.conf.dir" {
            clean.set(k, v);
        }
    }
    std::mem::swap(&mut env, &mut clean);
    env
}

/// The `EMBER_*` variable that carries `key` to an application
/// (`ember.executor.memory` → `EMBER_EXECUTOR_MEMORY`).
pub fn env_name(key: &str) -> Result<String> {
    let rest = key.strip_prefix("ember.").ok_or_else(|| EmberError::Conf {
        key: key.to_string(),
        message: "configuration keys start with `ember.`".into(),
    })?;
    if rest.is_empty() || rest.contains('_') {
        return Err(EmberError::Conf {
            key: key.to_string(),
            message: "cannot be passed as an EMBER_* variable".into(),
        });
    }
    Ok(format!(
        "EMBER_{}",
        rest.replace('.', "_").to_ascii_uppercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_variables_the_context_reads_back() {
        assert_eq!(
            env_name("ember.executor.memory").unwrap(),
            "EMBER_EXECUTOR_MEMORY"
        );
        assert_eq!(
            env_name("ember.authenticate.secretFile").unwrap(),
            "EMBER_AUTHENTICATE_SECRETFILE"
        );
        assert!(env_name("spark.master").is_err());
    }

    #[test]
    fn flags_beat_conf_pairs_which_beat_the_defaults_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DEFAULTS_FILE);
        std::fs::write(
            &file,
            "# defaults\nember.executor.memory 4g\nember.cores.max=8\nember.app.name fromfile\n",
        )
        .unwrap();
        let conf = resolve(
            Some(&file),
            &[
                "ember.cores.max=3".into(),
                "ember.executor.memory=3g".into(),
            ],
            &[
                ("ember.executor.memory", Some("2g".into())),
                ("ember.master", None),
            ],
        )
        .unwrap();
        assert_eq!(conf.get("ember.executor.memory"), Some("2g"));
        assert_eq!(conf.get("ember.cores.max"), Some("3"));
        assert_eq!(conf.get("ember.app.name"), Some("fromfile"));
    }
}
