//! `dida new` as a user runs it (docs/operators.md, "From zero"): the crate it writes
//! into a directory outside the repository builds for `wasm32-wasip2` with nothing
//! but registry crates, its own test passes on the host, and the component it builds
//! is accepted by the worker's runtime; deployed to a running cluster, it runs on a
//! worker started after the deploy, over HTTP and with `dida run`, and its
//! executions, per-operator timings and log lines can be inspected.

use std::path::Path;
use std::process::{Command, Output};

use dida_worker::runtime::OperatorRuntime;
use dida_worker::SandboxLimits;
use serde_json::{json, Value};

mod support;
use support::live::{stderr, stdout, LiveCluster};
use support::{as_on_a_users_machine, dida, target_dir};

const CLASS: &str = "HelloOperator";

/// `dida new ARGS…`.
fn dida_new(args: &[&str]) -> Output {
    Command::new(dida())
        .arg("new")
        .args(args)
        .output()
        .expect("run dida new")
}

/// `cargo ARGS…` in `dir` as on a user's machine, with a target directory of its
/// own under this test's scratch space (so a rerun builds incrementally).
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir());
    as_on_a_users_machine(&mut command);
    command.output().expect("run cargo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_operator_is_built_deployed_invoked_and_inspected() {
    let scratch = tempfile::tempdir().unwrap();
    let crate_dir = scratch.path().join("hello");
    let created = dida_new(&[CLASS, "--path", crate_dir.to_str().unwrap()]);
    assert!(created.status.success(), "{}", stderr(&created));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "wit/operator.wit",
        "vendor/dida-sdk/Cargo.toml",
        "vendor/dida-sdk/src/lib.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).is_file(), "dida new wrote no {file}");
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"hello-operator\""), "{manifest}");
    assert!(
        !manifest.contains(env!("CARGO_MANIFEST_DIR")),
        "the scaffold must not point into this repository: {manifest}"
    );

    // The generated unit test runs on the host, through the SDK built for the host.
    let tested = cargo(&crate_dir, &["test"]);
    assert!(tested.status.success(), "cargo test: {}", stderr(&tested));
    let test_output = String::from_utf8_lossy(&tested.stdout);
    assert!(
        test_output.contains("greets_and_counts ... ok"),
        "{test_output}"
    );

    let built = cargo(
        &crate_dir,
        &["build", "--release", "--target", "wasm32-wasip2"],
    );
    assert!(built.status.success(), "cargo build: {}", stderr(&built));
    let release = target_dir().join("wasm32-wasip2").join("release");
    let wasm = std::fs::read(release.join(format!("{CLASS}.wasm"))).unwrap();
    assert_eq!(
        wasm.get(..8),
        Some(b"\0asm\x0d\x00\x01\x00".as_slice()),
        "not a component"
    );
    OperatorRuntime::new(SandboxLimits::default())
        .unwrap()
        .compile(&wasm)
        .expect("the worker's runtime accepts the component");

    // Deployed to a running cluster before any worker runs, then run by a worker
    // started after the deploy: over HTTP, and with `dida run`.
    let component = scratch.path().join(format!("{CLASS}.wasm"));
    std::fs::write(&component, &wasm).unwrap();
    let mut cluster = LiveCluster::start(1).await;
    let deployed = cluster.dida(&["operator", "deploy", component.to_str().unwrap()]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    cluster.start_workers().await;

    cluster
        .register_app("hello", &format!("operator {CLASS} 0\n"))
        .await;
    let invoked = cluster.invoke_app("hello", "world").await;
    assert_eq!(invoked["outputs"], json!(["hello, world (#1)"]));
    let http_id = invoked["id"].as_str().unwrap().to_string();

    let app = scratch.path().join("hello-app.txt");
    std::fs::write(&app, format!("operator {CLASS} 0\n")).unwrap();
    let run = cluster.dida(&["run", "--input", "world", "--json", app.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run: Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(run["outputs"], json!(["hello, world (#2)"]), "{run}");

    // Both executions are listed, with their per-operator timings and logs.
    let listed = cluster.dida(&["executions", "--limit", "5"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = stdout(&listed);
    assert!(listed.contains(&http_id), "{listed}");
    assert_eq!(listed.matches("succeeded").count(), 2, "{listed}");
    let status = cluster.dida(&["status", &http_id]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status = stdout(&status);
    assert!(
        status.contains(&format!("[0] {CLASS} on worker w1, started "))
            && status.contains(" ms), fuel ")
            && status.contains(" KiB: ok"),
        "{status}"
    );
    let logs = cluster.dida(&["logs", &http_id]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let logs = stdout(&logs);
    assert!(logs.contains("greeted/world = 1 at version"), "{logs}");
    let over_http = cluster.get(&format!("/v1/executions/{http_id}/logs")).await;
    let over_http = over_http.json().unwrap();
    assert!(
        over_http["lines"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("greeted/world = 1")),
        "{over_http}"
    );
}

#[test]
fn new_refuses_a_bad_class_name_and_a_non_empty_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let target = scratch.path().join("op");
    let bad = dida_new(&["hello-operator", "--path", target.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("did you mean HelloOperator?"),
        "{}",
        stderr(&bad)
    );
    assert!(!target.exists(), "nothing is written for a bad name");

    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    let taken = dida_new(&[CLASS, "--path", target.to_str().unwrap()]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(
        stderr(&taken).contains("is not empty"),
        "{}",
        stderr(&taken)
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        1,
        "nothing is added to a non-empty directory"
    );

    // An empty directory is fine.
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let created = dida_new(&[CLASS, "--path", empty.to_str().unwrap()]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(empty.join("src/lib.rs").is_file());
}
