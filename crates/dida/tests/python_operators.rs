//! Operators written in Python, as a user builds and runs them: `dida build` turns
//! each sample of `operators/python` (the course's operators and the shop) into a
//! component from source, and the demo script runs once on the Rust built-ins and
//! once on the Python ones: the same outcomes and the same records. Then the ways a
//! Python operator fails — an endless loop, an exception, a wrong return type, a huge
//! output — each fail only their own execution, and the worker goes on.
//!
//! The first run installs componentize-py from PyPI into the user's cache
//! (`dida build` does). `dida build` also compiles each component into this
//! machine's compile cache, where the workers find it: without that, a cold worker
//! would spend 15-30 s of CPU per Python operator on its first use.

mod common;
mod support;

use common::{build_all, check_demo_like_rust, failure, run_failures, SAMPLES};

#[test]
fn python_operators_run_the_course_and_the_shop_like_the_rust_ones_and_fail_cleanly() {
    let scratch = tempfile::tempdir().unwrap();
    let operators = scratch.path().join("operators");
    std::fs::create_dir(&operators).unwrap();
    let files = ["app.py", "operator.toml"];
    build_all(
        "python",
        "samples",
        &SAMPLES,
        &files,
        &scratch.path().join("samples"),
        &operators,
    );
    build_all(
        "python",
        "fixtures",
        &["FailOperator"],
        &files,
        &scratch.path().join("fixtures"),
        &operators,
    );

    // The demo, on the Rust built-ins and then on the Python operators.
    let cluster = scratch.path().join("cluster");
    std::fs::create_dir(&cluster).unwrap();
    check_demo_like_rust(&cluster, &operators, "Python");

    // How Python operators fail: each execution alone, with the guest's message,
    // within its limit; IncrementOperator then shows the worker still serves.
    let clients = run_failures(
        &cluster,
        &operators,
        &["forever", "raise", "wrong-type", "huge"],
    );
    let forever = failure(&clients, "forever");
    assert!(forever.contains("exceeded its CPU limit"), "{forever}");
    let raise = failure(&clients, "raise");
    assert!(raise.contains("KeyError: 'missing key'"), "{raise}");
    let wrong_type = failure(&clients, "wrong-type");
    assert!(
        wrong_type.contains("run returned int, not str"),
        "{wrong_type}"
    );
    let huge = failure(&clients, "huge");
    assert!(
        huge.contains("memory limit") || huge.contains("MemoryError"),
        "{huge}"
    );
}
