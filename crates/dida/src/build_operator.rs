//! `dida build [DIR]`: builds the operator in DIR, in whichever language it is
//! written, into a WebAssembly component, checks that workers can run it (compiling
//! it into this machine's compile cache on the way), and prints the component's path
//! (the file `dida operator deploy` takes).
//!
//! The language comes from `operator.toml` (`language = "rust" | "python" | "js"`,
//! which `dida new` writes; `javascript` is taken for `js`), or, without one, from a
//! `Cargo.toml` (Rust). The class name comes from `operator.toml`'s `name`, or, for
//! Rust, from the crate's `[lib] name` as cargo names the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use dida_core::app::check_operator_name;
use dida_worker::runtime::OperatorRuntime;

use crate::conventions::print_line;

/// Flags of `dida build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The operator's directory (the one `dida new` wrote).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The languages an operator may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A crate using dida-sdk, built by cargo for wasm32-wasip2.
    Rust,
    /// `app.py` defining `run`, built by componentize-py.
    Python,
    /// `app.js` exporting `run`, built by componentize-js.
    #[value(alias = "javascript")]
    Js,
}

/// What `operator.toml` says.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    language: String,
}

/// Runs `dida build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let path = build(&args.dir)?;
    precompile(&path)?;
    print_line(&path.display().to_string());
    Ok(())
}

/// Checks that the component at `path` is an operator a worker can run, by compiling
/// it as a worker with default settings does, and leaves the result in this
/// machine's compile cache (see `dida worker --compile-cache`): workers of a local
/// cluster then load it at once instead of compiling it on its first use, which
/// takes a Python operator 15-30 s of CPU (a JavaScript one about 22 s).
fn precompile(path: &Path) -> anyhow::Result<()> {
    let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut runtime = OperatorRuntime::new(crate::worker::default_sandbox_limits()?)?;
    if let Some(dir) = dida_settings::paths::default_compile_cache() {
        runtime = runtime.with_compiled_cache(&dir);
    }
    runtime
        .compile(&wasm)
        .with_context(|| format!("{} is not an operator a worker can run", path.display()))?;
    Ok(())
}

/// Builds the operator in `dir`; returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let manifest_path = dir.join("operator.toml");
    if manifest_path.is_file() {
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid operator.toml", manifest_path.display()))?;
        check_operator_name(&manifest.name)
            .map_err(|e| anyhow::anyhow!("{}: name: {e}", manifest_path.display()))?;
        let language =
            <Language as clap::ValueEnum>::from_str(&manifest.language, false).map_err(|_| {
                anyhow::anyhow!(
                    "{}: language {:?} is not one dida builds (rust, python, js)",
                    manifest_path.display(),
                    manifest.language
                )
            })?;
        return match language {
            Language::Python => crate::python_operator::build(dir, &manifest.name),
            Language::Js => crate::js_operator::build(dir, &manifest.name),
            Language::Rust => build_rust(dir),
        };
    }
    if dir.join("Cargo.toml").is_file() {
        return build_rust(dir);
    }
    bail!(
        "{} holds no operator: neither an operator.toml nor a Cargo.toml (`dida new` writes one)",
        dir.display()
    )
}

/// Copies the component cargo built to `<dir>/build/`, where `dida build` leaves
/// the component of an operator in any language, so the next command (`dida operator
/// deploy build/<Class>.wasm`) is the same whatever the language and wherever the
/// crate's target directory is.
fn copy_to_build_dir(dir: &Path, component: &Path) -> anyhow::Result<PathBuf> {
    let build = dir.join("build");
    std::fs::create_dir_all(&build)
        .with_context(|| format!("cannot create {}", build.display()))?;
    let name = component
        .file_name()
        .context("cargo reported a component without a file name")?;
    let copy = build.join(name);
    std::fs::copy(component, &copy)
        .with_context(|| format!("cannot copy {} to {}", component.display(), copy.display()))?;
    Ok(copy)
}

/// `cargo build --release --target wasm32-wasip2` in `dir`; the component is the one
/// `.wasm` file cargo reports for the crate's library, copied to `<dir>/build`.
fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo (a Rust operator is built with the Rust toolchain)")?;
    if !output.status.success() {
        bail!(
            "cargo could not build {} ({}); its message is above (is the target installed? \
             rustup target add wasm32-wasip2)",
            dir.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut components = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .filter_map(|message| message["filenames"].as_array().cloned())
        .flatten()
        .filter_map(|file| file.as_str().map(PathBuf::from))
        .filter(|file| file.extension().is_some_and(|e| e == "wasm"));
    match (components.next(), components.next()) {
        (Some(component), None) => copy_to_build_dir(dir, &component),
        (None, _) => bail!(
            "cargo built no component in {}: an operator crate is a cdylib",
            dir.display()
        ),
        (Some(_), Some(_)) => bail!(
            "cargo built more than one component in {}: build one operator crate at a time",
            dir.display()
        ),
    }
}
