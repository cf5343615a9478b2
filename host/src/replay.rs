//! `revinject replay`: fixture cases and their expectations.

use std::path::Path;
use std::process::ExitCode;

use crate::runtime::RuntimeOptions;

pub fn run(
    _dir: &Path,
    _policy: &Path,
    _options: &RuntimeOptions,
    _verbose: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("replay is not implemented yet")
}
