//! Records the commit the binary was built from, for `dida --version` (and every
//! subcommand's): a user reporting a bug, or an operator checking what a node
//! runs, then names the exact source. Built outside a git checkout (a source
//! tarball, `cargo install` from a registry) the commit is `unknown`.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DIDA_COMMIT={commit}");
    // Build again when HEAD moves: a checkout (HEAD itself), a commit on the branch
    // (the ref it names, loose or packed). Only files that exist are watched: cargo
    // runs a build script every time when a watched file is missing.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            if std::path::Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
