//! What the tests of operators written in other languages than Rust share
//! (`python_operators.rs`, `js_operators.rs`, `mixed_chain.rs`; each includes this module with
//! `mod common;` beside `mod support;`): building the samples of
//! `operators/<language>` with `dida build`, running a PuppetMaster script on the
//! components, and reducing a run to what must not depend on the language.
//!
//! Each test binary uses its own subset of them, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dida_local_cluster::free_ports;
use serde_json::Value;

use crate::support::{copy_example_files, dida, examples};

/// The course's operators and the shop's, as every language's samples name them.
pub const SAMPLES: [&str; 6] = [
    "AddOperator",
    "UpdateAndChainOperator",
    "IncrementOperator",
    "ReserveStockOperator",
    "ChargeOperator",
    "ConfirmOrderOperator",
];

/// The operators of `operators/<language>/<kind>/`.
fn sources(language: &str, kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../operators")
        .join(language)
        .join(kind)
}

/// Builds the operators `names` of `operators/<language>/<kind>` with `dida build`
/// (from copies of their `files`, so the repository stays clean) and lays the
/// components out in `out` as `<Name>.wasm`.
pub fn build_all(
    language: &str,
    kind: &str,
    names: &[&str],
    files: &[&str],
    scratch: &Path,
    out: &Path,
) {
    let start = |name: &str| {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in files {
            std::fs::copy(
                sources(language, kind).join(name).join(file),
                dir.join(file),
            )
            .unwrap();
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
    // The first build may install the language's toolchain; the others share it,
    // two at a time (the machine's cores).
    finish(start(names[0]));
    for pair in names[1..].chunks(2) {
        let children: Vec<_> = pair.iter().map(|name| start(name)).collect();
        children.into_iter().for_each(finish);
    }
}

/// Runs a PuppetMaster script (every `localhost:PORT` given a free port) in batch
/// JSON mode; returns its events.
pub fn run_script(dir: &Path, text: &str, operators: Option<&Path>) -> Vec<Value> {
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
pub fn outcome(events: &[Value]) -> (Vec<String>, BTreeMap<String, String>) {
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

/// Runs the demo script in `cluster` (a scratch directory, given the examples'
/// files here) on the Rust built-ins and then on the components in `operators` (an
/// operators directory takes precedence over the built-ins of the same name), and
/// checks that both come to the same outcomes and records.
pub fn check_demo_like_rust(cluster: &Path, operators: &Path, language: &str) {
    copy_example_files(cluster);
    let demo = std::fs::read_to_string(examples().join("demo.txt")).unwrap();
    let rust = outcome(&run_script(cluster, &demo, None));
    let guest = outcome(&run_script(cluster, &demo, Some(operators)));
    assert_eq!(
        guest, rust,
        "the {language} operators diverged from the Rust ones"
    );
    assert!(
        rust.0.iter().any(|c| c.contains("out of stock: pen")),
        "{:?}",
        rust.0
    );
    assert_eq!(rust.1.get("23").map(String::as_str), Some("success"));
}

/// Runs `FailOperator` of `operators` once per input of `inputs`, one after the
/// other on one worker, then `IncrementOperator` (client `7`) on that worker; returns
/// every client's event by input. `cluster` is the directory [`check_demo_like_rust`]
/// ran in.
pub fn run_failures(cluster: &Path, operators: &Path, inputs: &[&str]) -> BTreeMap<String, Value> {
    std::fs::write(cluster.join("apps/fail.txt"), "operator FailOperator 0\n").unwrap();
    let mut script = "\
scheduler sched http://localhost:17100
storage s1 http://localhost:17101 0
worker w1 http://localhost:17111 0
"
    .to_string();
    for input in inputs {
        script.push_str(&format!("client {input} apps/fail.txt\nawait\n"));
    }
    script.push_str("client 7 apps/increment.txt\nawait\n");
    let events = run_script(cluster, &script, Some(operators));
    let clients: BTreeMap<String, Value> = events
        .into_iter()
        .filter(|e| e["event"] == "client")
        .map(|e| (e["input"].as_str().unwrap().to_string(), e))
        .collect();
    let increment = &clients["7"];
    assert_eq!(increment["status"], "ok", "{increment}");
    assert_eq!(increment["outputs"], serde_json::json!(["1", "2"]));
    clients
}

/// The error the client of `input` failed with (its execution must have failed).
pub fn failure(clients: &BTreeMap<String, Value>, input: &str) -> String {
    let client = &clients[input];
    assert_eq!(client["status"], "error", "{client}");
    client["error"].as_str().unwrap().to_string()
}
