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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;

use dida_local_cluster::free_ports;
use serde_json::Value;
use support::{copy_example_files, dida, examples};

/// The Python operators under `operators/python/<kind>/`.
fn python_sources(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../operators/python")
        .join(kind)
}

/// Builds the Python operators `names` of `operators/python/<kind>` with
/// `dida build` (from copies, so the repository stays clean) and lays the components
/// out in `out` as `<Name>.wasm`.
fn build_all(kind: &str, names: &[&str], scratch: &Path, out: &Path) {
    let start = |name: &str| {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["app.py", "operator.toml"] {
            std::fs::copy(python_sources(kind).join(name).join(file), dir.join(file)).unwrap();
        }
        let child = Command::new(dida())
            .arg("build")
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        (name.to_string(), child)
    };
    let finish = |(name, child): (String, std::process::Child)| {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "dida build of {name} failed");
        // `dida build` prints the component's path.
        let built = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        assert_eq!(built.file_name().unwrap(), format!("{name}.wasm").as_str());
        std::fs::copy(&built, out.join(format!("{name}.wasm"))).unwrap();
    };
    // The first build may install componentize-py; the others share it, two at a
    // time (the machine's cores).
    finish(start(names[0]));
    for pair in names[1..].chunks(2) {
        let children: Vec<_> = pair.iter().map(|name| start(name)).collect();
        children.into_iter().for_each(finish);
    }
}

/// Runs a PuppetMaster script (every `localhost:PORT` given a free port) in batch
/// JSON mode; returns its events.
fn run_script(dir: &Path, text: &str, operators: Option<&Path>) -> Vec<Value> {
    let mut text = text.to_string();
    let ports: Vec<String> = (17100..=17113).map(|p| format!("localhost:{p}")).collect();
    for (port, free) in ports.iter().zip(free_ports(ports.len()).unwrap()) {
        text = text.replace(port, &format!("127.0.0.1:{free}"));
    }
    let script = dir.join("script.txt");
    std::fs::write(&script, text).unwrap();
    let mut command = Command::new(dida());
    command
        .arg("pm")
        .arg(&script)
        .args(["--batch", "--json"])
        .current_dir(dir);
    if let Some(operators) = operators {
        command.arg("--operators").arg(operators);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

/// What a run of the demo came to, with every execution id replaced by the input
/// and the rank of its client among those of the same input (`pen#2`), and the
/// versions left out of outputs (a key named after an execution id lives on other
/// replicas in another run): every client's outcome, and every key's newest value.
fn outcome(events: &[Value]) -> (Vec<String>, BTreeMap<String, String>) {
    let mut names = BTreeMap::new();
    let mut seen = BTreeMap::<String, usize>::new();
    let mut clients = Vec::new();
    for event in events.iter().filter(|e| e["event"] == "client") {
        let input = event["input"].as_str().unwrap().to_string();
        let rank = seen.entry(input.clone()).or_default();
        *rank += 1;
        names.insert(
            event["id"].as_str().unwrap().to_string(),
            format!("{input}#{rank}"),
        );
        clients.push(event.clone());
    }
    let anonymous = |text: &str| {
        let mut text = text.to_string();
        for (id, name) in &names {
            text = text.replace(id, name);
        }
        match text.split_once('@') {
            Some((before, _)) => format!("{before}@VERSION"),
            None => text,
        }
    };
    let mut described: Vec<String> = clients
        .iter()
        .map(|c| {
            let outputs: Vec<String> = c["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| anonymous(o.as_str().unwrap()))
                .collect();
            format!(
                "{} {} {:?} {}",
                anonymous(c["id"].as_str().unwrap()),
                c["status"],
                outputs,
                c["error"]
            )
        })
        .collect();
    described.sort();
    let mut newest = BTreeMap::<String, (u64, u64, String)>::new();
    for record in events.iter().filter(|e| e["event"] == "record") {
        let version = (
            record["version"]["number"].as_u64().unwrap(),
            record["version"]["replica"].as_u64().unwrap(),
        );
        let entry = newest
            .entry(anonymous(record["key"].as_str().unwrap()))
            .or_insert((0, 0, String::new()));
        if version >= (entry.0, entry.1) {
            *entry = (
                version.0,
                version.1,
                record["value"].as_str().unwrap().into(),
            );
        }
    }
    let values = newest.into_iter().map(|(k, (_, _, v))| (k, v)).collect();
    (described, values)
}

#[test]
fn python_operators_run_the_course_and_the_shop_like_the_rust_ones_and_fail_cleanly() {
    let scratch = tempfile::tempdir().unwrap();
    let operators = scratch.path().join("operators");
    std::fs::create_dir(&operators).unwrap();
    build_all(
        "samples",
        &[
            "AddOperator",
            "UpdateAndChainOperator",
            "IncrementOperator",
            "ReserveStockOperator",
            "ChargeOperator",
            "ConfirmOrderOperator",
        ],
        &scratch.path().join("samples"),
        &operators,
    );
    build_all(
        "fixtures",
        &["FailOperator"],
        &scratch.path().join("fixtures"),
        &operators,
    );

    // The demo, on the Rust built-ins and then on the Python operators (an
    // operators directory takes precedence over the built-ins of the same name).
    let cluster = scratch.path().join("cluster");
    std::fs::create_dir(&cluster).unwrap();
    copy_example_files(&cluster);
    let demo = std::fs::read_to_string(examples().join("demo.txt")).unwrap();
    let rust = outcome(&run_script(&cluster, &demo, None));
    let python = outcome(&run_script(&cluster, &demo, Some(&operators)));
    assert_eq!(
        python, rust,
        "the Python operators diverged from the Rust ones"
    );
    assert!(
        rust.0.iter().any(|c| c.contains("out of stock: pen")),
        "{:?}",
        rust.0
    );
    assert_eq!(rust.1.get("23").map(String::as_str), Some("success"));

    // How Python operators fail: each execution alone, with the guest's message,
    // within its limit; the last client shows the worker still serves.
    std::fs::write(cluster.join("apps/fail.txt"), "operator FailOperator 0\n").unwrap();
    let failures = "\
scheduler sched http://localhost:17100
storage s1 http://localhost:17101 0
worker w1 http://localhost:17111 0
client forever apps/fail.txt
await
client raise apps/fail.txt
await
client wrong-type apps/fail.txt
await
client huge apps/fail.txt
await
client 7 apps/increment.txt
await
";
    let events = run_script(&cluster, failures, Some(&operators));
    let clients: BTreeMap<&str, &Value> = events
        .iter()
        .filter(|e| e["event"] == "client")
        .map(|e| (e["input"].as_str().unwrap(), e))
        .collect();
    let error = |input: &str| {
        let client = clients[input];
        assert_eq!(client["status"], "error", "{client}");
        client["error"].as_str().unwrap().to_string()
    };
    assert!(
        error("forever").contains("exceeded its CPU limit"),
        "{}",
        error("forever")
    );
    assert!(
        error("raise").contains("KeyError: 'missing key'"),
        "{}",
        error("raise")
    );
    assert!(
        error("wrong-type").contains("run returned int, not str"),
        "{}",
        error("wrong-type")
    );
    let huge = error("huge");
    assert!(
        huge.contains("memory limit") || huge.contains("MemoryError"),
        "{huge}"
    );
    assert_eq!(clients["7"]["status"], "ok", "{}", clients["7"]);
    assert_eq!(clients["7"]["outputs"], serde_json::json!(["1", "2"]));
}
