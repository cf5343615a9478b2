//! Kubewarden's own engines (`kwctl`, `policy-server`): where to find them and how to prepare
//! the policy for them.
//!
//! Users have them on `PATH`; CI has them in `../shared/kubewarden/bin/`. Each is taken from
//! its environment variable (`KWCTL`, `POLICY_SERVER`), then `PATH`, then that directory; a
//! command that needs one and finds none says so and is skipped ([`Located::Missing`]).

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `kwctl`, found through `KWCTL`.
pub const KWCTL: Engine = Engine {
    binary: "kwctl",
    env: "KWCTL",
};

/// `policy-server`, found through `POLICY_SERVER`.
pub const POLICY_SERVER: Engine = Engine {
    binary: "policy-server",
    env: "POLICY_SERVER",
};

/// Where CI keeps the engines, relative to the project root.
pub const SHARED_BIN: &str = "../shared/kubewarden/bin";

/// One of Kubewarden's binaries.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    pub binary: &'static str,
    pub env: &'static str,
}

/// The outcome of looking for an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// Found: its path, and how it was found.
    Found(PathBuf, String),
    /// Not found: why (what was searched).
    Missing(String),
}

impl Engine {
    /// `explicit` (a command-line flag), else `$ENV`, else `PATH`, else [`SHARED_BIN`] under
    /// the working directory. An explicit path or `$ENV` that does not exist is an error, not
    /// a fallback: the user asked for that binary.
    pub fn locate(&self, explicit: Option<&Path>) -> anyhow::Result<Located> {
        if let Some(path) = explicit {
            if !path.is_file() {
                bail!("{} {} does not exist", self.binary, path.display());
            }
            return Ok(Located::Found(path.to_path_buf(), "given".into()));
        }
        if let Some(value) = std::env::var_os(self.env).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(value);
            if !path.is_file() {
                bail!("${}={} does not exist", self.env, path.to_string_lossy());
            }
            return Ok(Located::Found(path, format!("${}", self.env)));
        }
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let candidate = dir.join(self.binary);
                if is_executable(&candidate) {
                    return Ok(Located::Found(candidate, "PATH".into()));
                }
            }
        }
        let shared = Path::new(SHARED_BIN).join(self.binary);
        if is_executable(&shared) {
            return Ok(Located::Found(shared, SHARED_BIN.into()));
        }
        Ok(Located::Missing(format!(
            "{} not found: set ${} or put it on PATH (looked in PATH and {SHARED_BIN}/)",
            self.binary, self.env
        )))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `kwctl annotate -m METADATA -o OUT POLICY`, unless OUT is newer than both inputs. kwctl and
/// policy-server only grant a policy the host capabilities its metadata lists, so the
/// context-aware policy must be annotated before either runs it.
pub fn annotate(kwctl: &Path, policy: &Path, metadata: &Path, out: &Path) -> anyhow::Result<()> {
    let modified = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot read {}", p.display()))
    };
    if out.exists() {
        let made = modified(out)?;
        if made >= modified(policy)? && made >= modified(metadata)? {
            return Ok(());
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let output = Command::new(kwctl)
        .env("RUST_BACKTRACE", "0")
        .arg("annotate")
        .arg("-m")
        .arg(metadata)
        .arg("-o")
        .arg(out)
        .arg(policy)
        .output()
        .with_context(|| format!("cannot run {}", kwctl.display()))?;
    if !output.status.success() {
        bail!(
            "kwctl annotate {} failed: {}",
            policy.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_path_must_exist() {
        let missing = Path::new("/nonexistent/kwctl");
        let err = KWCTL.locate(Some(missing)).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/kwctl"), "{err}");
        let here = std::env::current_exe().unwrap();
        assert_eq!(
            KWCTL.locate(Some(&here)).unwrap(),
            Located::Found(here.clone(), "given".into())
        );
    }
}
