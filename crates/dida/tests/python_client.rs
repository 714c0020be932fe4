//! The .proto files as users of other languages take them: a Python client is
//! generated from them with grpcio-tools (the standard protoc inside), and writes,
//! reads and compares-and-swaps through real `dida storage` processes. What it
//! writes, the Rust client reads back, so both speak the same protocol.
//!
//! `scripts/ensure-protoc.sh` (sourced by `scripts/test.sh`) installs grpcio-tools
//! into a virtual environment and names its interpreter in `DIDA_TEST_PYTHON`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dida_local_cluster::{ClusterSpec, LocalCluster};
use serde_json::Value;

mod support;
use support::{dida, eventually, run_ok as run};

/// The client program: every call has a deadline, and it prints one JSON object.
const CLIENT: &str = r#"
import json, sys
import grpc
import storage_pb2 as pb
import storage_pb2_grpc as rpc

address, key = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(address) as channel:
    storage = rpc.StorageStub(channel)
    written = storage.Write(pb.WriteRequest(key=key, value="from python"), timeout=10)
    read = storage.Read(pb.ReadRequest(key=key), timeout=10)
    swapped = storage.UpdateIfValueIs(
        pb.UpdateIfValueIsRequest(key=key, old_value="from python", new_value="swapped"),
        timeout=10,
    )
    refused = storage.UpdateIfValueIs(
        pb.UpdateIfValueIsRequest(key=key, old_value="from python", new_value="again"),
        timeout=10,
    )
    print(json.dumps({
        "written": written.version.number,
        "read": read.record.value,
        "read_version": read.record.version.number,
        "swapped": swapped.version.number if swapped.HasField("version") else None,
        "refused": refused.HasField("version"),
    }))
"#;

fn python() -> PathBuf {
    PathBuf::from(std::env::var_os("DIDA_TEST_PYTHON").expect(
        "DIDA_TEST_PYTHON is not set: source scripts/ensure-protoc.sh first (scripts/test.sh does)",
    ))
}

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_writes_reads_and_swaps() {
    let generated = tempfile::tempdir().unwrap();
    let protos: Vec<PathBuf> = std::fs::read_dir(proto_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "proto"))
        .collect();
    assert_eq!(protos.len(), 4, "every .proto file: {protos:?}");
    run(Command::new(python())
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("--proto_path={}", proto_dir().display()))
        .arg(format!("--python_out={}", generated.path().display()))
        .arg(format!("--grpc_python_out={}", generated.path().display()))
        .args(&protos));
    let client = generated.path().join("client.py");
    std::fs::write(&client, CLIENT).unwrap();

    let cluster = LocalCluster::start(dida(), ClusterSpec::default())
        .await
        .unwrap();
    let rust = cluster.client().unwrap();
    rust.wait_until_all_alive(Duration::from_secs(30))
        .await
        .expect("the cluster settles");
    // A key s1 leads, so that the read at s1 sees the write at once: a replica
    // that is not the primary catches up asynchronously (SPEC §2.2).
    let key = (0..)
        .map(|n| format!("python-key-{n}"))
        .find(|key| rust.replicas(key).first() == Some(&"s1"))
        .unwrap();
    let member = &cluster.membership().members()[0];
    let address = format!("{}:{}", member.url.host, member.url.port);
    let stdout = run(Command::new(python())
        .arg(&client)
        .args([address.as_str(), key.as_str()])
        .current_dir(generated.path()));
    let answer: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(answer["written"], 1, "{answer}");
    assert_eq!(answer["read"], "from python", "{answer}");
    assert_eq!(answer["read_version"], 1, "{answer}");
    assert_eq!(answer["swapped"], 2, "{answer}");
    assert_eq!(answer["refused"], false, "{answer}");

    // Replicas other than the primary catch up asynchronously (SPEC §2.2).
    let record = eventually(
        Duration::from_secs(20),
        "the Rust client to read what Python swapped in",
        || async {
            let record = rust.read(&key, None).await.ok()??;
            (record.value == "swapped").then_some(record)
        },
    )
    .await;
    assert_eq!(record.version.number, 2);
}
