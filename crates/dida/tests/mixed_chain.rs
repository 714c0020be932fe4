//! A chain whose operators are written in three languages keeps SPEC §4's
//! guarantees: Rust's WriteOperator (or ReadOperator) first, then a Python and a
//! JavaScript read of the same key, then Rust's ReadOperator again — every read of an
//! execution returns the version its first operator wrote (or read), although other
//! clients overwrite the key the whole time and many executions run at once on three
//! workers. The pins travel in the request from worker to worker whatever language
//! the operator that made them was written in.
//!
//! The Python and JavaScript reads are the fixtures of `operators/python/fixtures`
//! and `operators/js/fixtures`, built from source with `dida build`.

mod common;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{ExecutionOutcome, RunRequest, SubmitRequest};
use dida_proto::transport::lazy_channel;
use futures::StreamExt;

use common::build_all;
use support::dida;

/// The key every execution reads and the writer overwrites.
const KEY: &str = "mixed";

/// Executions of each chain, and how many run at once.
const EXECUTIONS: usize = 24;
const IN_FLIGHT: usize = 8;

/// Versions a replica keeps: far more than the writer makes while one execution
/// runs, so a pinned version is never garbage-collected (that failure has its own
/// test in chain_execution.rs).
const MAX_VERSIONS: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_python_and_javascript_operators_of_one_chain_read_one_version() {
    let scratch = tempfile::tempdir().unwrap();
    let operators = scratch.path().join("operators");
    std::fs::create_dir(&operators).unwrap();
    build_all(
        "python",
        "fixtures",
        &["PythonReadOperator"],
        &["app.py", "operator.toml"],
        &scratch.path().join("python"),
        &operators,
    );
    build_all(
        "js",
        "fixtures",
        &["JsReadOperator"],
        &["app.js", "operator.toml"],
        &scratch.path().join("js"),
        &operators,
    );

    let mut cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            nodes: 3,
            replication_factor: 3,
            max_versions: MAX_VERSIONS,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    cluster
        .start_compute(
            dida(),
            ComputeSpec {
                workers: 3,
                operators_dir: Some(operators),
                ..ComputeSpec::default()
            },
        )
        .await
        .unwrap();
    let storage = Arc::new(cluster.client().unwrap());
    storage.write(KEY, "initial").await.unwrap();
    let channel = lazy_channel(cluster.scheduler_url().unwrap(), Duration::from_secs(120)).unwrap();
    let scheduler = SchedulerClient::new(channel);

    // Another client overwrites the key for as long as the executions run.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (storage, stop) = (storage.clone(), stop.clone());
        tokio::spawn(async move {
            let mut writes = 0;
            while !stop.load(Ordering::Relaxed) {
                storage
                    .write(KEY, &format!("overwrite-{writes}"))
                    .await
                    .unwrap();
                writes += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            writes
        })
    };

    let writing = [
        "WriteOperator",
        "PythonReadOperator",
        "JsReadOperator",
        "ReadOperator",
    ];
    let reading = [
        "ReadOperator",
        "JsReadOperator",
        "PythonReadOperator",
        "ReadOperator",
    ];
    let chains = (0..EXECUTIONS).flat_map(|_| [&writing, &reading]);
    let outcomes: Vec<(&[&str; 4], ExecutionOutcome)> = futures::stream::iter(chains)
        .map(|chain| {
            let mut scheduler = scheduler.clone();
            async move {
                let reply = scheduler
                    .run(RunRequest {
                        submit: Some(SubmitRequest {
                            app: "mixed".into(),
                            operators: chain.iter().map(|s| s.to_string()).collect(),
                            input: KEY.into(),
                        }),
                        wait_ms: 100_000,
                    })
                    .await
                    .unwrap_or_else(|s| panic!("{chain:?} refused: {}", s.message()))
                    .into_inner();
                assert!(reply.finished, "{chain:?} did not end: {reply:?}");
                (chain, reply.outcome.unwrap())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let overwrites = writer.await.unwrap();
    assert!(overwrites > 0, "the key was never overwritten");

    for (chain, outcome) in &outcomes {
        assert_eq!(outcome.error, None, "{chain:?}: {outcome:?}");
        assert_eq!(outcome.outputs.len(), 4, "{chain:?}: {outcome:?}");
        let first = &outcome.outputs[0];
        assert!(first.contains('@'), "{chain:?}: {outcome:?}");
        assert!(
            outcome.outputs.iter().all(|output| output == first),
            "every operator of {chain:?} must read the version its first one pinned: {:?}",
            outcome.outputs
        );
        if chain[0] == "WriteOperator" {
            let written = format!("written-by-{}@", outcome.execution_id);
            assert!(first.starts_with(&written), "{first} is not {written}…");
        }
    }
    cluster.kill_all().await.unwrap();
}
