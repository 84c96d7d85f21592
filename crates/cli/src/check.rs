//! `splitlm check`: a configuration validated without running it, printed fully resolved as
//! TOML — every default filled in, each attack's and defense's parameters included — so what
//! will run can be read before it runs. `splitlm import-vflair` sends its output through the
//! same check.

use std::path::Path;

use anyhow::{Context, Result, bail};
use splitlm_bench::RunConfig;

/// `config` as TOML: every field that has a value, defaults included. Fields whose value is
/// "none" (an absent partition, no clipping bound…) have no TOML spelling and stay absent, as
/// they would be written by hand.
pub fn resolved_toml(config: &RunConfig) -> Result<String> {
    toml::to_string(config).context("writing the configuration as TOML")
}

/// Reads `text` back as a run configuration (validating every value, as `train` would) and
/// makes sure it is `config` again: what is printed or written is exactly what will run.
pub fn reads_back(text: &str, config: &RunConfig) -> Result<()> {
    let again = RunConfig::from_toml(text, &[]).context("the resolved configuration")?;
    if &again != config {
        bail!(
            "the resolved configuration does not read back as the same configuration \
             (a serialisation bug): {config:?} became {again:?}"
        );
    }
    Ok(())
}

/// Loads `path` with `overrides` exactly as `train`, `eval` and `grid` do (refusing unknown
/// keys and bad values by name), and returns it resolved as TOML, under a comment saying where
/// it came from.
pub fn check(path: &Path, overrides: &[String]) -> Result<String> {
    let config = RunConfig::load(path, overrides)?;
    let body = resolved_toml(&config)?;
    reads_back(&body, &config)?;
    let mut out = format!(
        "# {}, resolved by `splitlm check`: every default filled in.\n",
        path.display()
    );
    for item in overrides {
        out.push_str(&format!("# --set {item}\n"));
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}
