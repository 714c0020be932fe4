//! Operators written in JavaScript: the scaffold `dida new --lang js` writes, and the
//! build `dida build` runs for it (docs/operators.md, "In JavaScript").
//!
//! A JavaScript operator is a directory holding `app.js` (an ES module exporting
//! `run(ctx, input, previous)`) and `operator.toml` (its class name). The build
//! bundles the SDK's entry module with `app.js` and what it imports (rolldown), and
//! hands the bundle to componentize-js, which embeds it in StarlingMonkey (the
//! SpiderMonkey engine built for WASI) as a component of the same WIT world as the
//! Rust SDK's, pre-initialised: the module is evaluated at build time, not at every
//! invocation.
//!
//! The SDK (`operators/js/sdk`: the `dida.js` module operators import as `#dida`, its
//! TypeScript declarations, and the entry module that exports `run`) and the WIT
//! world travel inside this binary, as the Rust scaffold's do, and are written to
//! `build/dida-sdk/` next to the build's output, so an operator builds anywhere with
//! only Node.js, npm and the network to the npm registry. The tools are installed on
//! first use under the user's cache directory with `npm ci` from a lock file that
//! pins every package, transitive ones included, by version and integrity hash
//! (`operators/js/toolchain`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The contract between worker and operator.
const OPERATOR_WIT: &str = include_str!("../../../wit/operator.wit");
/// The JavaScript SDK: the `#dida` module operators import.
const SDK_MODULE: &str = include_str!("../../../operators/js/sdk/dida.js");
/// The SDK's TypeScript declarations, for editors and `tsc --checkJs`.
const SDK_TYPES: &str = include_str!("../../../operators/js/sdk/dida.d.ts");
/// The module the component is built from: it exports `run` and calls app.js's.
const SDK_ENTRY: &str = include_str!("../../../operators/js/sdk/dida_entry.js");
/// What the toolchain directory installs (componentize-js and rolldown)...
const TOOLCHAIN_PACKAGE: &str = include_str!("../../../operators/js/toolchain/package.json");
/// ...at exactly these versions and integrity hashes, every transitive package too.
const TOOLCHAIN_LOCK: &str = include_str!("../../../operators/js/toolchain/package-lock.json");
/// The Node.js script that bundles an operator and runs componentize-js on it.
const BUILD_SCRIPT: &str = include_str!("../../../operators/js/toolchain/build.mjs");

/// The componentize-js release operators are built with (the lock file's).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The files of the scaffold of JavaScript operator `class` (package name
/// `package`): path and text. The SDK is not among them: [`write_sdk`] writes it.
pub fn scaffold_files(class: &str, package: &str) -> Vec<(&'static str, String)> {
    vec![
        ("app.js", app_source(class)),
        ("app.test.js", test_source()),
        ("package.json", package_json(package)),
        ("jsconfig.json", JSCONFIG.to_string()),
        (
            "operator.toml",
            format!("# Built by `dida build`.\nname = \"{class}\"\nlanguage = \"js\"\n"),
        ),
        ("README.md", readme(class)),
        (".gitignore", "/build\nnode_modules/\n".to_string()),
    ]
}

/// Writes the SDK and the WIT world into `<dir>/build/dida-sdk`, where `dida build`
/// bundles them from and where the scaffold's package.json points `#dida` (so the
/// operator's tests and its editor find the SDK as soon as `dida new` is done).
pub fn write_sdk(dir: &Path) -> anyhow::Result<PathBuf> {
    let sdk = dir.join("build").join("dida-sdk");
    for (relative, text) in [
        ("wit/operator.wit", OPERATOR_WIT),
        ("dida.js", SDK_MODULE),
        ("dida.d.ts", SDK_TYPES),
        ("dida_entry.js", SDK_ENTRY),
    ] {
        let path = sdk.join(relative);
        fs::create_dir_all(path.parent().expect("a relative path has a parent"))
            .with_context(|| format!("cannot create {}", sdk.display()))?;
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(sdk)
}

/// Builds the JavaScript operator in `dir` as `<dir>/build/<class>.wasm` and returns
/// that path. Installs the toolchain first when it is missing.
pub fn build(dir: &Path, class: &str) -> anyhow::Result<PathBuf> {
    let app = dir.join("app.js");
    if !app.is_file() {
        bail!(
            "{} has no app.js: a JavaScript operator exports run(ctx, input, previous) there",
            dir.display()
        );
    }
    let script = toolchain()?;
    let sdk = write_sdk(dir)?;
    let output = dir.join("build").join(format!("{class}.wasm"));
    let status = Command::new("node")
        .arg(&script)
        .arg("--app")
        .arg(&app)
        .arg("--sdk")
        .arg(&sdk)
        .arg("--out")
        .arg(&output)
        // What the module prints while it is evaluated at build time goes to stdout;
        // `dida build`'s own stdout is the component's path, for `$(dida build)`.
        .stdout(std::io::stderr())
        .status()
        .context("cannot run node (JavaScript operators are built with Node.js 20.19 or later)")?;
    if !status.success() {
        bail!(
            "componentize-js could not build {} ({status}); its message is above",
            dir.display()
        );
    }
    Ok(output)
}

/// The build script, in `<cache>/dida/toolchains/componentize-js-<version>` with the
/// packages it imports, installed there first when they are not.
fn toolchain() -> anyhow::Result<PathBuf> {
    let dir = crate::toolchains::dir()?.join(format!("componentize-js-{COMPONENTIZE_JS_VERSION}"));
    // Written last: an interrupted install is found incomplete and redone. An install
    // from another lock file (another dida release, same componentize-js) is redone
    // too: npm ci leaves the lock file it installed beside the packages.
    let installed = dir.join("installed");
    let current = installed.is_file()
        && fs::read_to_string(dir.join("package-lock.json"))
            .is_ok_and(|lock| lock == TOOLCHAIN_LOCK);
    if !current {
        install(&dir)?;
        fs::write(&installed, COMPONENTIZE_JS_VERSION)
            .with_context(|| format!("cannot write {}", installed.display()))?;
    }
    // Written at every build, whole or not at all (another build may be reading it),
    // so that a newer dida with the same packages runs its own script.
    let script = dir.join("build.mjs");
    if fs::read_to_string(&script).ok().as_deref() != Some(BUILD_SCRIPT) {
        let partial = dir.join(format!("build.mjs.{}", std::process::id()));
        fs::write(&partial, BUILD_SCRIPT)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        fs::rename(&partial, &script)
            .with_context(|| format!("cannot write {}", script.display()))?;
    }
    Ok(script)
}

/// `npm ci` of the pinned packages into `dir`, from scratch.
fn install(dir: &Path) -> anyhow::Result<()> {
    eprintln!(
        "== installing componentize-js {COMPONENTIZE_JS_VERSION} from the npm registry into {} \
         (once; about 400 MB)",
        dir.display()
    );
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in [
        ("package.json", TOOLCHAIN_PACKAGE),
        ("package-lock.json", TOOLCHAIN_LOCK),
    ] {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // `npm ci` installs exactly the lock file, checking every package's integrity
    // hash. None of the packages has an install script (the lock file would say
    // `hasInstallScript`): their native parts come as per-platform packages, so
    // scripts stay off.
    crate::toolchains::run(
        Command::new("npm")
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(dir)
            // Its summary too: `dida build`'s stdout is the component's path.
            .stdout(std::io::stderr()),
        "npm ci (componentize-js, which builds JavaScript operators, is an npm package: \
         install Node.js 20.19 or later with npm)",
    )
}

/// Tells TypeScript-aware editors how app.js resolves `#dida` (through package.json's
/// `imports`, as Node.js does), so `// @ts-check` finds the SDK's declarations.
const JSCONFIG: &str = r#"{
  "compilerOptions": {
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "target": "es2022",
    "strict": true,
    "noEmit": true
  },
  "exclude": ["build", "node_modules"]
}
"#;

fn package_json(package: &str) -> String {
    format!(
        r##"{{
  "name": "{package}",
  "private": true,
  "type": "module",
  "description": "A dida operator: `dida build` turns app.js into a WebAssembly component.",
  "imports": {{
    "#dida": "./build/dida-sdk/dida.js"
  }},
  "scripts": {{
    "test": "node --test",
    "build": "dida build"
  }}
}}
"##
    )
}

fn app_source(class: &str) -> String {
    format!(
        r##"// @ts-check
/**
 * {class}: greets its input and counts the greetings in storage.
 *
 * `dida build` turns this directory into {class}.wasm; the worker calls `run` once
 * per execution, in a fresh instance (module variables changed while running do not
 * survive between calls). `#dida` is the SDK, in build/dida-sdk (see package.json).
 */

import {{ OperatorError }} from "#dida";

/**
 * The logic, apart from storage so that it can be tested on the host: the greeting
 * of `name` and its new count, given the stored one.
 * @param {{string}} name
 * @param {{string | undefined}} storedCount
 * @returns {{[string, number]}}
 */
export function greeting(name, storedCount) {{
  if (name.trim() === "") {{
    throw new OperatorError("nobody to greet: the input is empty");
  }}
  const before = storedCount === undefined ? 0 : Number(storedCount);
  if (!Number.isSafeInteger(before) || before < 0) {{
    throw new OperatorError(`the stored count ${{JSON.stringify(storedCount)}} is not a number`);
  }}
  const count = before + 1;
  return [`hello, ${{name}} (#${{count}})`, count];
}}

/** @type {{import("#dida").Run}} */
export function run(ctx, input, previous) {{
  const key = `greeted/${{input}}`;
  const [text, count] = greeting(previous ?? input, ctx.read(key)?.value);
  const version = ctx.write(key, String(count));
  ctx.info(`wrote ${{key}}@${{version}}`);
  return text;
}}
"##
    )
}

fn test_source() -> String {
    r##"// Unit tests of the operator's logic, on the host: node --test
import assert from "node:assert/strict";
import { test } from "node:test";

import { OperatorError } from "#dida";
import { greeting } from "./app.js";

test("greets and counts", () => {
  assert.deepEqual(greeting("world", undefined), ["hello, world (#1)", 1]);
  assert.deepEqual(greeting("world", "41"), ["hello, world (#42)", 42]);
});

test("refuses an empty name and a count that is no number", () => {
  assert.throws(() => greeting(" ", undefined), OperatorError);
  assert.throws(() => greeting("world", "many"), /is not a number/);
});
"##
    .to_string()
}

fn readme(class: &str) -> String {
    format!(
        r#"# {class}

A dida operator in JavaScript, written by `dida new --lang js`: `run` in `app.js` is
called once per execution with a `Context` (storage, metadata, logging), the client's
input and the previous operator's output. A thrown `OperatorError` fails the
execution with its message, any other exception with its name and message.

```sh
node --test                         # the logic's unit tests, on the host (Node.js 20.19+)
dida build                          # build/{class}.wasm (installs componentize-js once)
dida operator deploy build/{class}.wasm   # to the cluster of `dida up`; --scheduler URL for another
dida run --operators {class} --input world
```

`#dida`, the SDK, is in `build/dida-sdk` (with its types, `dida.d.ts`), which
`dida new` and every `dida build` write: after a fresh clone, run `dida build` before
the tests. See docs/operators.md in the dida repository for what an operator can do.
"#
    )
}
