//! Operators written in JavaScript, as a user builds and runs them: `dida build`
//! turns each sample of `operators/js` (the course's operators and the shop) into a
//! component from source, and the demo script runs once on the Rust built-ins and
//! once on the JavaScript ones: the same outcomes and the same records. Then the ways
//! a JavaScript operator fails — an endless loop, a thrown Error, a wrong return
//! type, a memory bomb, a huge output — each fail only their own execution, and the
//! worker goes on.
//!
//! The first run installs componentize-js and its packages from the npm registry
//! into the user's cache (`dida build` does, with `npm ci` from the lock file in
//! `operators/js/toolchain`): it needs Node.js 20.19 or later and npm. `dida build`
//! also compiles each component into this machine's compile cache, where the workers
//! find it.

mod common;
mod support;

use std::path::Path;
use std::process::Command;

use common::{build_all, check_demo_like_rust, failure, run_failures, SAMPLES};
use support::{dida, stderr, stdout};

#[test]
fn js_operators_run_the_course_and_the_shop_like_the_rust_ones_and_fail_cleanly() {
    let scratch = tempfile::tempdir().unwrap();
    let operators = scratch.path().join("operators");
    std::fs::create_dir(&operators).unwrap();
    let files = ["app.js", "operator.toml"];
    build_all(
        "js",
        "samples",
        &SAMPLES,
        &files,
        &scratch.path().join("samples"),
        &operators,
    );
    build_all(
        "js",
        "fixtures",
        &["FailOperator"],
        &files,
        &scratch.path().join("fixtures"),
        &operators,
    );

    // The demo, on the Rust built-ins and then on the JavaScript operators.
    let cluster = scratch.path().join("cluster");
    std::fs::create_dir(&cluster).unwrap();
    check_demo_like_rust(&cluster, &operators, "JavaScript");

    // How JavaScript operators fail: each execution alone, with the guest's message,
    // within its limit; IncrementOperator then shows the worker still serves.
    let clients = run_failures(
        &cluster,
        &operators,
        &["forever", "throw", "wrong-type", "memory", "huge"],
    );
    let forever = failure(&clients, "forever");
    assert!(forever.contains("exceeded its CPU limit"), "{forever}");
    let thrown = failure(&clients, "throw");
    assert!(thrown.contains("RangeError: thrown on purpose"), "{thrown}");
    let wrong_type = failure(&clients, "wrong-type");
    assert!(
        wrong_type.contains("run returned number, not string"),
        "{wrong_type}"
    );
    // The engine throws when the heap cannot grow; the 64 MiB output is refused when
    // it is copied out, past the guest's error handling.
    let memory = failure(&clients, "memory");
    assert!(
        memory.contains("out of memory: the operator reached its memory limit"),
        "{memory}"
    );
    let huge = failure(&clients, "huge");
    assert!(huge.contains("memory limit"), "{huge}");
}

/// `dida new --lang js` writes an operator whose unit tests pass on the host at once
/// (its package.json maps `#dida` to the SDK it writes into `build/dida-sdk`), and the
/// SDK's own tests, over a fake of the worker's imports, pass.
#[test]
fn the_js_scaffold_and_the_sdk_pass_their_tests_on_node() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("hello");
    let new = Command::new(dida())
        .args(["new", "HelloOperator", "--lang", "js", "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(new.status.success(), "{}", stderr(&new));
    assert!(stdout(&new).contains("node --test"), "{}", stdout(&new));
    let toml = std::fs::read_to_string(dir.join("operator.toml")).unwrap();
    assert!(toml.contains("language = \"js\""), "{toml}");
    assert!(dir.join("build/dida-sdk/dida.d.ts").is_file());
    let sdk_tests =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../operators/js/sdk/dida.test.js");
    for (what, directory, args) in [
        (
            "the scaffold's tests",
            dir.as_path(),
            vec!["--test".to_string()],
        ),
        (
            "the SDK's tests",
            scratch.path(),
            vec!["--test".to_string(), sdk_tests.display().to_string()],
        ),
    ] {
        let output = Command::new("node")
            .args(&args)
            .current_dir(directory)
            .output()
            .expect("node (Node.js 20.19 or later) runs the JavaScript operators' tests");
        assert!(
            output.status.success(),
            "{what} failed:\n{}\n{}",
            stdout(&output),
            stderr(&output)
        );
        assert!(stdout(&output).contains("# fail 0"), "{}", stdout(&output));
    }
}
