//! Builds the guest workspace `operators/` (the SDK, the sample operators and the test
//! fixtures) for `wasm32-wasip2` with a nested `cargo build`, and lays the resulting
//! components out in `OUT_DIR`:
//!
//! - `OUT_DIR/builtin/<Name>.wasm`: the operators embedded in dida (see `src/lib.rs`);
//! - `OUT_DIR/fixtures/<Name>.wasm`: test fixtures, a directory tests pass to a worker
//!   as `--operators`.
//!
//! The nested build uses its own target directory inside `OUT_DIR`, so it never waits
//! for the lock of the outer build's target directory, and runs with a clean set of
//! the environment variables through which the outer build (or `cargo clippy`, or a
//! coverage tool) would otherwise impose its flags, wrapper or target on it. It shares
//! the outer build's jobserver, so the two together use no more than `-j` jobs.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target of the operators: a WASI preview 2 component.
const TARGET: &str = "wasm32-wasip2";

/// Operators embedded in dida as built-ins (`builtin()` in `src/lib.rs`): the course
/// samples of SPEC §3.4, the no-op and read/write probes, and the shop example.
const BUILTINS: &[&str] = &[
    "AddOperator",
    "IncrementOperator",
    "UpdateAndChainOperator",
    "EchoOperator",
    "ReadOperator",
    "WriteOperator",
    "ReserveStockOperator",
    "ChargeOperator",
    "ConfirmOrderOperator",
    "SleepOperator",
];

/// Test fixtures: built, laid out in `fixtures_dir()`, never embedded.
const FIXTURES: &[&str] = &[
    "LoopOperator",
    "MemoryBombOperator",
    "TrapOperator",
    "FailOperator",
    "AwaitKeyOperator",
    "LogOperator",
];

/// Environment variables a build script inherits that must not reach the nested
/// build: flags for the host target, the outer target directory (its lock would
/// deadlock us), a forced target, and the wrappers of `cargo clippy` / `cargo fix`.
const SCRUBBED: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

/// Prefixes of further variables to scrub: profile overrides (the guest workspace
/// has its own, size-oriented, release profile) and `cargo fix`'s private protocol.
const SCRUBBED_PREFIXES: &[&str] = &["CARGO_PROFILE_", "__CARGO_FIX"];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("this crate lives at <repo>/crates/operators");
    let operators = repo.join("operators");
    let wit = repo.join("wit");

    rerun_if_changed(&operators, &wit);
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    check_target_installed(&rustc);

    let target_dir = out_dir.join("wasm-target");
    build(&operators, &target_dir);

    let built = target_dir.join(TARGET).join("release");
    lay_out(&built, BUILTINS, &out_dir.join("builtin"));
    write_builtin_table(&out_dir);
    lay_out(&built, FIXTURES, &out_dir.join("fixtures"));
    warn_about_unlisted(&built);
}

/// Reruns the build when a source of the guest workspace or the WIT contract
/// changes. The member directories are watched rather than `operators/` itself so
/// that a `target/` there (from building the guest workspace by hand) is ignored.
fn rerun_if_changed(operators: &Path, wit: &Path) {
    for path in [
        operators.join("Cargo.toml"),
        operators.join("Cargo.lock"),
        operators.join("sdk"),
        operators.join("samples"),
        operators.join("fixtures"),
        wit.to_path_buf(),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Fails with a clear message when the standard library for `wasm32-wasip2` is
/// missing, instead of letting the nested build fail with "can't find crate for
/// `core`". When it cannot tell (no `rustc --print`), it lets the build go on.
fn check_target_installed(rustc: &OsStr) {
    let Ok(output) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
    else {
        return;
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("Could not find specification") || stderr.contains("unknown target") {
            fail_missing_target(&format!(
                "this rustc does not know the target: {}",
                stderr.trim()
            ));
        }
        return;
    }
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let has_std = fs::read_dir(&libdir)
        .map(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libstd-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false);
    if !has_std {
        fail_missing_target(&format!("no standard library in {}", libdir.display()));
    }
}

fn fail_missing_target(detail: &str) -> ! {
    eprintln!(
        "\nerror: dida-operators builds the operators as WebAssembly components, which needs \
         the Rust target `{TARGET}` ({detail}).\nInstall it with:\n\n    rustup target add {TARGET}\n"
    );
    std::process::exit(1);
}

/// Runs `cargo build --release --target wasm32-wasip2` on the guest workspace.
fn build(operators: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(operators)
        .arg("build")
        .arg("--manifest-path")
        .arg(operators.join("Cargo.toml"))
        .args(["--release", "--locked", "--workspace", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    for var in SCRUBBED {
        command.env_remove(var);
    }
    for (var, _) in env::vars_os() {
        let name = var.to_string_lossy();
        if SCRUBBED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&var);
        }
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run the nested cargo build of {}: {e}",
            operators.display()
        )
    });
    // Cargo reads this script's stdout for directives: the nested output goes to
    // stderr, which cargo shows when the build fails (or with `-vv`).
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        panic!(
            "the nested build of the operators failed ({}); its output is above.\n\
             Reproduce it with: cargo build --release --target {TARGET} --manifest-path {}",
            output.status,
            operators.join("Cargo.toml").display()
        );
    }
}

/// Copies `<name>.wasm` of each of `names` from `built` to `dest`, checking that it
/// is a component (not a core module).
fn lay_out(built: &Path, names: &[&str], dest: &Path) {
    fs::create_dir_all(dest).unwrap_or_else(|e| panic!("cannot create {}: {e}", dest.display()));
    for name in names {
        let file = format!("{name}.wasm");
        let source = built.join(&file);
        let bytes = fs::read(&source).unwrap_or_else(|e| {
            panic!(
                "the nested build did not produce {} ({e}): is there a crate with `[lib] name = \"{name}\"` \
                 in the operators workspace?",
                source.display()
            )
        });
        // A component starts with `\0asm` and then version 0x0d, layer 1 (a core
        // module has version 1, layer 0).
        if bytes.get(..8) != Some(b"\0asm\x0d\x00\x01\x00".as_slice()) {
            panic!(
                "{} is not a WebAssembly component (header {:02x?})",
                source.display(),
                &bytes[..bytes.len().min(8)]
            );
        }
        let target = dest.join(&file);
        fs::write(&target, &bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
    }
}

/// Writes `OUT_DIR/builtin.rs`: the expression `src/lib.rs` includes as the table
/// of built-ins, each embedded with `include_bytes!`.
fn write_builtin_table(out_dir: &Path) {
    let mut table = String::from("&[\n");
    for name in BUILTINS {
        table.push_str(&format!(
            "    BuiltinOperator {{ name: {name:?}, wasm: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/builtin/{name}.wasm\")) }},\n"
        ));
    }
    table.push_str("]\n");
    let path = out_dir.join("builtin.rs");
    fs::write(&path, table).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Warns about a component the guest workspace builds but neither list mentions:
/// most likely a new operator someone forgot to register here and in `src/lib.rs`.
fn warn_about_unlisted(built: &Path) {
    let Ok(entries) = fs::read_dir(built) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension() != Some(OsStr::new("wasm")) {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(OsStr::to_str) else {
            continue;
        };
        if !BUILTINS.contains(&stem) && !FIXTURES.contains(&stem) {
            println!(
                "cargo:warning=operators/ builds {stem}.wasm, which is neither a built-in nor a fixture \
                 (list it in crates/operators/build.rs)"
            );
        }
    }
}
