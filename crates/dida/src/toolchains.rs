//! Where the tools that build operators in other languages than Rust are installed
//! (componentize-py for Python, componentize-js for JavaScript), and how they are
//! run: once per user, under the user's cache directory, so `dida build` needs no
//! step by hand.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

/// `<user cache>/toolchains` (see [`dida_settings::paths::user_cache_dir`]).
pub fn dir() -> anyhow::Result<PathBuf> {
    dida_settings::paths::user_cache_dir()
        .map(|dir| dir.join("toolchains"))
        .context("neither XDG_CACHE_HOME nor HOME is set: no place to install the build tools")
}

/// Runs `command` to install a tool; `what` says what it is, for the error.
pub fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
