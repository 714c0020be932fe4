//! Operators written in Python: the scaffold `dida new --lang python` writes, and the
//! build `dida build` runs for it (docs/operators.md, "In Python").
//!
//! A Python operator is a directory holding `app.py` (which defines
//! `run(ctx, input, previous)`) and `operator.toml` (its class name). The build hands
//! it to componentize-py, which embeds CPython and the operator's modules in a
//! component of the same WIT world as the Rust SDK's, pre-initialised (the modules
//! are imported at build time, not at every invocation).
//!
//! The SDK (`operators/python/sdk`: the `dida` module and the entry module that
//! exports `run`) and the WIT world travel inside this binary, as the Rust scaffold's
//! do, and are written next to the build's output, so an operator builds anywhere
//! with only Python 3 and the network to PyPI. componentize-py itself is installed on
//! first use into a virtual environment under the user's cache directory, pinned by
//! version (and, on x86-64 Linux, by the wheel's SHA-256).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The contract between worker and operator.
const OPERATOR_WIT: &str = include_str!("../../../wit/operator.wit");
/// The Python SDK: the `dida` module operators import.
const SDK_MODULE: &str = include_str!("../../../operators/python/sdk/dida/__init__.py");
/// The module componentize-py builds from: it exports `run` and calls `app.run`.
const SDK_ENTRY: &str = include_str!("../../../operators/python/sdk/dida_entry.py");

/// The componentize-py release operators are built with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// SHA-256 of its x86-64 Linux wheel (`manylinux_2_28_x86_64`), checked by pip.
const COMPONENTIZE_PY_SHA256_X86_64: &str =
    "8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f";

/// The files of the scaffold of Python operator `class`: path and text.
pub fn scaffold_files(class: &str) -> Vec<(&'static str, String)> {
    vec![
        ("app.py", app_source(class)),
        ("test_app.py", test_source()),
        (
            "operator.toml",
            format!("# Built by `dida build`.\nname = \"{class}\"\nlanguage = \"python\"\n"),
        ),
        ("README.md", readme(class)),
        (".gitignore", "/build\n__pycache__/\n".to_string()),
    ]
}

/// Builds the Python operator in `dir` as `<dir>/build/<class>.wasm` and returns that
/// path. Installs componentize-py first when it is missing.
pub fn build(dir: &Path, class: &str) -> anyhow::Result<PathBuf> {
    if !dir.join("app.py").is_file() {
        bail!(
            "{} has no app.py: a Python operator defines run(ctx, input, previous) there",
            dir.display()
        );
    }
    let componentize = componentize_py()?;
    let build = dir.join("build");
    let sdk = build.join("dida-sdk");
    for (relative, text) in [
        ("wit/operator.wit", OPERATOR_WIT),
        ("python/dida/__init__.py", SDK_MODULE),
        ("python/dida_entry.py", SDK_ENTRY),
    ] {
        let path = sdk.join(relative);
        fs::create_dir_all(path.parent().expect("a relative path has a parent"))
            .with_context(|| format!("cannot create {}", sdk.display()))?;
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let output = build.join(format!("{class}.wasm"));
    let status = Command::new(&componentize)
        .arg("--quiet")
        .arg("-d")
        .arg(sdk.join("wit"))
        .args(["-w", "operator", "componentize", "dida_entry", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(sdk.join("python"))
        .arg("-o")
        .arg(&output)
        // Bytecode caches would land in the operator's own directory.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .with_context(|| format!("cannot run {}", componentize.display()))?;
    if !status.success() {
        bail!(
            "componentize-py could not build {} ({status}); its message is above",
            dir.display()
        );
    }
    Ok(output)
}

/// The `componentize-py` executable, installed into
/// `<cache>/dida/toolchains/componentize-py-<version>` when it is not there yet.
fn componentize_py() -> anyhow::Result<PathBuf> {
    let venv = crate::toolchains::dir()?.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    let program = venv.join("bin").join("componentize-py");
    // Written last: an interrupted install is found incomplete and redone.
    let installed = venv.join("installed");
    if installed.is_file() && program.is_file() {
        return Ok(program);
    }
    eprintln!(
        "== installing componentize-py {COMPONENTIZE_PY_VERSION} from PyPI into {} (once)",
        venv.display()
    );
    let _ = fs::remove_dir_all(&venv);
    crate::toolchains::run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (componentize-py, which builds Python operators, is a Python \
         package: install Python 3 with its venv module)",
    )?;
    let hashed = cfg!(all(target_arch = "x86_64", target_os = "linux"));
    let requirement = if hashed {
        format!(
            "componentize-py=={COMPONENTIZE_PY_VERSION} \
             --hash=sha256:{COMPONENTIZE_PY_SHA256_X86_64}\n"
        )
    } else {
        format!("componentize-py=={COMPONENTIZE_PY_VERSION}\n")
    };
    let requirements = venv.join("requirements.txt");
    fs::write(&requirements, &requirement)
        .with_context(|| format!("cannot write {}", requirements.display()))?;
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
    ]);
    if hashed {
        pip.arg("--require-hashes");
    }
    crate::toolchains::run(
        pip.arg("-r").arg(&requirements),
        "pip install componentize-py (from PyPI)",
    )?;
    fs::write(&installed, COMPONENTIZE_PY_VERSION)
        .with_context(|| format!("cannot write {}", installed.display()))?;
    Ok(program)
}

fn app_source(class: &str) -> String {
    format!(
        r#""""{class}: greets its input and counts the greetings in storage.

`dida build` turns this directory into {class}.wasm; the worker calls `run` once per
execution, in a fresh instance (module globals do not survive between calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # The `dida` module exists inside the component only.
    import dida


def greeting(name: str, stored_count: Optional[str]) -> tuple[str, int]:
    """The logic, apart from storage so that it can be tested on the host: the
    greeting of `name` and its new count, given the stored one."""
    if not name.strip():
        raise ValueError("nobody to greet: the input is empty")
    count = int(stored_count) + 1 if stored_count else 1
    return f"hello, {{name}} (#{{count}})", count


def run(ctx: dida.Context, input: str, previous: Optional[str]) -> str:
    key = f"greeted/{{input}}"
    record = ctx.read(key)
    text, count = greeting(input, record.value if record else None)
    version = ctx.write(key, str(count))
    ctx.info(f"wrote {{key}}@{{version}}")
    return text
"#
    )
}

fn test_source() -> String {
    r#""""Unit tests of the operator's logic, on the host: python3 -m unittest"""

import unittest

from app import greeting


class GreetingTest(unittest.TestCase):
    def test_greets_and_counts(self):
        self.assertEqual(greeting("world", None), ("hello, world (#1)", 1))
        self.assertEqual(greeting("world", "41"), ("hello, world (#42)", 42))

    def test_refuses_an_empty_name(self):
        with self.assertRaises(ValueError):
            greeting(" ", None)


if __name__ == "__main__":
    unittest.main()
"#
    .to_string()
}

fn readme(class: &str) -> String {
    format!(
        r#"# {class}

A dida operator in Python, written by `dida new --lang python`: `run` in `app.py` is
called once per execution with a `dida.Context` (storage, metadata, logging), the
client's input and the previous operator's output. An exception fails the
execution with its message.

```sh
python3 -m unittest                 # the logic's unit tests, on the host
dida build                          # build/{class}.wasm (installs componentize-py once)
dida operator deploy build/{class}.wasm   # to the cluster of `dida up`; --scheduler URL for another
dida run --operators {class} --input world
```

See docs/operators.md in the dida repository for what an operator can do.
"#
    )
}
