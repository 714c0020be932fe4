//! `dida new`: writes an operator crate that builds anywhere (docs/operators.md,
//! "From zero").
//!
//! The crate needs nothing from this repository at build time: the WIT world and the
//! SDK travel with it, taken from the very files this binary was built from
//! (`wit/operator.wit`, `operators/sdk/src/lib.rs`), so there is one source of truth
//! and a scaffold always matches the workers of the same release. The SDK's version
//! of `wit-bindgen`, the size-oriented release profile and the pinned dependency
//! versions come from the guest workspace's `operators/Cargo.toml` and `Cargo.lock`
//! the same way.
//!
//! Layout written (`<Class>` is the operator class name, `<crate>` its kebab-case
//! package name, see [`package_name`]):
//!
//! ```text
//! Cargo.toml              [package] <crate>, [lib] name = "<Class>", its own [workspace]
//! Cargo.lock              the versions the dida release was built and tested with
//! src/lib.rs              the operator: logic in a pure function, with a unit test
//! wit/operator.wit        the contract with the worker
//! vendor/dida-sdk/        the SDK (its `../../wit` is the scaffold's `wit/`)
//! README.md, .gitignore
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use dida_core::app::check_operator_name;

use crate::build_operator::Language;
use crate::conventions::print_line;

/// The contract between worker and operator, as this binary's workers implement it.
const OPERATOR_WIT: &str = include_str!("../../../wit/operator.wit");
/// The SDK's source, as the built-in operators are built with.
const SDK_LIB: &str = include_str!("../../../operators/sdk/src/lib.rs");
/// The guest workspace's manifest: the `wit-bindgen` requirement and the release
/// profile are copied from it.
const GUEST_MANIFEST: &str = include_str!("../../../operators/Cargo.toml");
/// The guest workspace's lock file: the scaffold builds with the same versions.
const GUEST_LOCK: &str = include_str!("../../../operators/Cargo.lock");

/// Flags of `dida new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The operator's class name, as applications name it (for example
    /// HelloOperator): letters, digits and '_', starting with a letter. The crate's
    /// library gets this name, so the build emits <NAME>.wasm; the package is its
    /// kebab-case form (hello-operator).
    name: String,
    /// Directory to create the operator in (default: ./<package name>). It must not
    /// exist or be empty.
    #[arg(long)]
    path: Option<PathBuf>,
    /// The language to write the operator in: rust (a crate), python (an `app.py`,
    /// built by `dida build` with componentize-py) or js (an `app.js`, built with
    /// componentize-js).
    // The values are named here rather than listed with their documentation, which
    // would take `dida new --help` past a screenful.
    #[arg(long, value_enum, default_value = "rust", hide_possible_values = true)]
    lang: Language,
}

/// Runs `dida new`.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let class = args.name.as_str();
    check_class_name(class)?;
    let package = package_name(class);
    let dir = args.path.unwrap_or_else(|| PathBuf::from(&package));
    let first_steps = match args.lang {
        Language::Rust => {
            write_scaffold(&dir, class)?;
            "cargo test"
        }
        Language::Python => {
            write_files(&dir, class, crate::python_operator::scaffold_files(class))?;
            "python3 -m unittest"
        }
        Language::Js => {
            write_files(
                &dir,
                class,
                crate::js_operator::scaffold_files(class, &package),
            )?;
            // The SDK, which package.json maps `#dida` to: the tests run at once.
            crate::js_operator::write_sdk(&dir)?;
            "node --test"
        }
    };
    print_line(&format!(
        "created operator {class} in {dir}\n\n\
         next, with `dida up` running (else add --scheduler URL to the dida commands):\n    \
         cd {dir}\n    \
         {first_steps}\n    \
         dida build\n    \
         dida operator deploy build/{class}.wasm\n    \
         dida run --operators {class} --input world\n    \
         dida app register {lower} --operators {class}\n    \
         dida run {lower} --input world\n\n\
         (see README.md there)",
        lower = package,
        dir = dir.display(),
    ));
    Ok(())
}

/// Checks `name` as a class name, suggesting the class name when it looks like a
/// package name (`hello-operator` → `HelloOperator`).
fn check_class_name(name: &str) -> anyhow::Result<()> {
    if let Err(error) = check_operator_name(name) {
        let suggestion = class_name_from(name)
            .filter(|class| check_operator_name(class).is_ok())
            .map(|class| format!(" (did you mean {class}?)"))
            .unwrap_or_default();
        bail!("{error}{suggestion}");
    }
    Ok(())
}

/// `hello-operator` / `hello_operator` → `HelloOperator`; `None` when nothing is left.
fn class_name_from(name: &str) -> Option<String> {
    let class: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    (!class.is_empty()).then_some(class)
}

/// The package name of class `class`: kebab-case, a `-` before each upper-case
/// letter that follows a lower-case letter or digit, and for `_`
/// (`HelloOperator` → `hello-operator`, `HTTPGet2` → `httpget2`,
/// `my_Op` → `my-op`).
pub fn package_name(class: &str) -> String {
    let mut package = String::new();
    let mut previous: Option<char> = None;
    for c in class.chars() {
        if c == '_' {
            if !package.is_empty() && !package.ends_with('-') {
                package.push('-');
            }
        } else {
            if c.is_ascii_uppercase()
                && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                && !package.ends_with('-')
            {
                package.push('-');
            }
            package.push(c.to_ascii_lowercase());
        }
        previous = Some(c);
    }
    package.trim_end_matches('-').to_string()
}

/// Writes the crate of operator `class` into `dir`, which must not exist or be empty.
pub fn write_scaffold(dir: &Path, class: &str) -> anyhow::Result<()> {
    let package = package_name(class);
    let files = vec![
        ("Cargo.toml", operator_manifest(class, &package)?),
        ("Cargo.lock", GUEST_LOCK.to_string()),
        ("src/lib.rs", operator_source(class)),
        ("wit/operator.wit", OPERATOR_WIT.to_string()),
        ("vendor/dida-sdk/Cargo.toml", sdk_manifest()?),
        ("vendor/dida-sdk/src/lib.rs", SDK_LIB.to_string()),
        ("README.md", readme(class, &package)),
        (".gitignore", "/target\n/build\n".to_string()),
    ];
    write_files(dir, class, files)
}

/// Writes `files` (path relative to `dir`, text) of operator `class` into `dir`,
/// which must not exist or be empty.
fn write_files(dir: &Path, class: &str, files: Vec<(&str, String)>) -> anyhow::Result<()> {
    check_class_name(class)?;
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty: give a new directory with --path",
                    dir.display()
                );
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} already exists and is not a directory", dir.display())
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", dir.display())),
    }
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The line of `section` in the guest manifest that starts with `key`.
fn guest_manifest_line(section: &str, key: &str) -> anyhow::Result<&'static str> {
    section_of(section)?
        .lines()
        .find(|line| line.trim_start().starts_with(key))
        .with_context(|| format!("operators/Cargo.toml has no {key} in [{section}]"))
}

/// The body of `[section]` in the guest manifest, up to the next section.
fn section_of(section: &str) -> anyhow::Result<&'static str> {
    let header = format!("[{section}]");
    let start = GUEST_MANIFEST
        .find(&header)
        .with_context(|| format!("operators/Cargo.toml has no {header}"))?
        + header.len();
    let body = &GUEST_MANIFEST[start..];
    let end = body.find("\n[").map_or(body.len(), |i| i + 1);
    Ok(&body[..end])
}

fn operator_manifest(class: &str, package: &str) -> anyhow::Result<String> {
    let profile = section_of("profile.release")?
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(format!(
        r#"[package]
name = "{package}"
version = "0.1.0"
edition = "2021"
publish = false

# A workspace of its own, so that a workspace above this directory does not claim it.
[workspace]
members = ["vendor/dida-sdk"]
resolver = "2"

# The library is named after the operator class: cargo emits {class}.wasm, the file
# name a worker looks the operator up by. `rlib` too, for `cargo test` on the host.
[lib]
name = "{class}"
crate-type = ["cdylib", "rlib"]

[dependencies]
dida-sdk = {{ path = "vendor/dida-sdk" }}

# Operators are instantiated for every invocation: small beats fast.
[profile.release]
{profile}
"#
    ))
}

fn sdk_manifest() -> anyhow::Result<String> {
    let wit_bindgen = guest_manifest_line("workspace.dependencies", "wit-bindgen")?;
    Ok(format!(
        r#"# The dida operator SDK, as shipped by `dida new` (from the dida release that wrote
# this crate; its bindings are generated from ../../wit/operator.wit).
[package]
name = "dida-sdk"
description = "Write dida operators (WebAssembly components) in a few lines of Rust."
version = "0.1.0"
edition = "2021"
license = "MIT OR Apache-2.0"
publish = false

[dependencies]
{wit_bindgen}
"#
    ))
}

fn operator_source(class: &str) -> String {
    format!(
        r#"//! `{class}`, a dida operator.
//!
//! It greets its input (or the previous operator's output, in a chain) and counts,
//! in storage key `greeted/<input>`, how many times that input was greeted. The
//! logic is in [`greeting`], a pure function tested on the host by `cargo test`;
//! [`{class}::run`] only does the storage and logging around it.

// The crate is named after the operator class so that cargo emits `{class}.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{{Context, Operator}};

/// See the crate documentation.
pub struct {class};

impl Operator for {class} {{
    fn run(ctx: &mut Context, input: &str, previous: Option<&str>) -> Result<String, String> {{
        let key = format!("greeted/{{input}}");
        // `?`: a storage error fails the execution with its message.
        let before = ctx.read(&key)?.map(|record| record.value);
        let (output, count) = greeting(previous.unwrap_or(input), before.as_deref())?;
        let version = ctx.write(&key, &count.to_string())?;
        ctx.info(format!("{{key}} = {{count}} at version {{version}}"));
        Ok(output)
    }}
}}

/// The greeting of `name`, and the new count, given the count stored before (`None`
/// when the key has no value yet).
pub fn greeting(name: &str, stored_count: Option<&str>) -> Result<(String, u64), String> {{
    let before = match stored_count {{
        None => 0,
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("the stored count {{text:?}} is not a number"))?,
    }};
    let count = before + 1;
    Ok((format!("hello, {{name}} (#{{count}})"), count))
}}

dida_sdk::export_operator!({class});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn greets_and_counts() {{
        assert_eq!(greeting("world", None), Ok(("hello, world (#1)".to_string(), 1)));
        assert_eq!(greeting("world", Some("41")), Ok(("hello, world (#42)".to_string(), 42)));
        assert!(greeting("world", Some("many")).is_err());
    }}
}}
"#
    )
}

fn readme(class: &str, package: &str) -> String {
    format!(
        r#"# {class}

A dida operator (package `{package}`), written by `dida new`. It builds on any machine
with the Rust toolchain: the WIT contract (`wit/operator.wit`) and the SDK
(`vendor/dida-sdk`) come with it.

```sh
rustup target add wasm32-wasip2               # once
cargo test                                    # the logic's unit tests, on the host
dida build                                    # build/{class}.wasm (cargo build --release --target wasm32-wasip2)
dida operator deploy build/{class}.wasm       # to the cluster of `dida up`; --scheduler URL for another
dida run --operators {class} --input world
```

Or give the directory holding `{class}.wasm` to the workers (`dida pm script.txt
--operators build`), and name the operator in an application file:
`operator {class} 0`.
See docs/operators.md in the dida repository for what an operator can do.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_kebab_case_of_the_class() {
        assert_eq!(package_name("HelloOperator"), "hello-operator");
        assert_eq!(package_name("Add2Operator"), "add2-operator");
        assert_eq!(package_name("HTTPGet"), "httpget");
        assert_eq!(package_name("my_Op"), "my-op");
        assert_eq!(package_name("x"), "x");
    }

    #[test]
    fn a_package_name_given_as_class_gets_a_suggestion() {
        let error = check_class_name("hello-operator").unwrap_err().to_string();
        assert!(error.contains("did you mean HelloOperator?"), "{error}");
        assert!(check_class_name("HelloOperator").is_ok());
        assert!(check_class_name("1abc").is_err());
    }

    #[test]
    fn the_manifests_take_what_they_need_from_the_guest_workspace() {
        let sdk = sdk_manifest().unwrap();
        assert!(sdk.contains("wit-bindgen = { version = \""), "{sdk}");
        let operator = operator_manifest("HelloOperator", "hello-operator").unwrap();
        assert!(operator.contains("opt-level = \"s\""), "{operator}");
        assert!(operator.contains("name = \"HelloOperator\""), "{operator}");
        // The SDK finds the WIT two directories up, where the scaffold puts it.
        assert!(SDK_LIB.contains(r#"path: "../../wit""#));
    }
}
