//! Deploying operators to a running cluster and invoking them over HTTP, as a user
//! does, against real processes on loopback: `dida storage` nodes, a `dida
//! scheduler` with its HTTP gateway, `dida worker`s started only after the deploy,
//! and the `dida operator` / `dida run` commands. HTTP calls go through a real
//! HTTP/1.1 client (hyper), as curl would.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dida_bench::http_client::{HttpResponse, Method, StatusCode};
use serde_json::{json, Value};

mod support;
use support::eventually;
use support::live::{stderr, stdout, LiveCluster as Cluster};

/// Writes built-in `builtin`'s component to `dir/<file>`.
fn component_file(dir: &Path, builtin: &str, file: &str) -> PathBuf {
    let path = dir.join(file);
    let operator = dida_operators::find_builtin(builtin).expect("a built-in");
    std::fs::write(&path, operator.wasm).unwrap();
    path
}

/// Asserts a gateway error: its status, and a JSON error body naming `needle`.
fn assert_error(response: &HttpResponse, status: StatusCode, needle: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    let body = response.json().unwrap();
    assert_eq!(body["error"]["status"], status.as_u16(), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_operator_runs_on_workers_started_after_the_deploy() {
    let mut cluster = Cluster::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let hello = component_file(dir.path(), "EchoOperator", "Hello.wasm");

    // Deployed while no worker runs: it lives in the storage cluster.
    let deployed = cluster.dida(&["operator", "deploy", hello.to_str().unwrap()]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    assert!(
        stdout(&deployed).contains("deployed Hello sha256"),
        "{}",
        stdout(&deployed)
    );

    // What is not an operator changes nothing.
    let garbage = dir.path().join("Garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let empty_component = dir.path().join("Empty.wasm");
    std::fs::write(&empty_component, b"\0asm\x0d\x00\x01\x00").unwrap();
    let huge = dir.path().join("Huge.wasm");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(dida_core::limits::MAX_OPERATOR_FILE_BYTES + 1)
        .unwrap();
    for (file, why) in [
        (&garbage, "not a valid WebAssembly component"),
        (&empty_component, "does not export `run`"),
        (&huge, "larger than the limit"),
    ] {
        let refused = cluster.dida(&["operator", "deploy", file.to_str().unwrap()]);
        assert!(!refused.status.success(), "{} was accepted", file.display());
        assert!(
            stderr(&refused).contains(why),
            "{why:?} not in {}",
            stderr(&refused)
        );
    }
    let refused = cluster.dida(&[
        "operator",
        "deploy",
        "--name",
        "bad name",
        hello.to_str().unwrap(),
    ]);
    assert!(
        stderr(&refused).contains("invalid operator name"),
        "{}",
        stderr(&refused)
    );
    let list = cluster.dida(&["operator", "list", "--json"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let deployed: Vec<Value> = stdout(&list)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["source"] == "deployed")
        .collect();
    assert_eq!(deployed.len(), 1, "{}", stdout(&list));
    assert_eq!(deployed[0]["operator"]["name"], "Hello");

    cluster.start_workers().await;

    // `dida run` and the gateway both run it.
    let app = dir.path().join("hello.txt");
    std::fs::write(&app, "operator Hello 0\noperator EchoOperator 1\n").unwrap();
    let run = cluster.dida(&["run", "--input", "hi", app.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stdout(&run).contains("[1] hi"), "{}", stdout(&run));

    cluster
        .register_app("hello", "operator Hello 0\noperator EchoOperator 1\n")
        .await;
    let body = cluster.invoke_app("hello", "there").await;
    assert_eq!(body["outputs"], json!(["there", "there"]));
    let id = body["id"].as_str().unwrap().to_string();
    let fetched = cluster
        .get(&format!("/v1/executions/{id}"))
        .await
        .json()
        .unwrap();
    assert_eq!(fetched["outputs"], json!(["there", "there"]));

    let started = cluster
        .post(
            "/v1/invoke?async=true",
            json!({"operators": ["Hello"], "input": "later"}),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let id = started.json().unwrap()["id"].as_str().unwrap().to_string();
    let ended = eventually(
        Duration::from_secs(30),
        "the async execution to end",
        || {
            let cluster = &cluster;
            let id = id.clone();
            async move {
                let body = cluster
                    .get(&format!("/v1/executions/{id}"))
                    .await
                    .json()
                    .ok()?;
                (body["status"] != "running").then_some(body)
            }
        },
    )
    .await;
    assert_eq!(ended["outputs"], json!(["later"]), "{ended}");

    let operators = cluster.get("/v1/operators").await.json().unwrap();
    assert_eq!(operators["deployed"][0]["name"], "Hello", "{operators}");
    assert!(
        operators["local"]
            .as_array()
            .unwrap()
            .contains(&json!("EchoOperator")),
        "{operators}"
    );

    // Not while a registered application uses it: the application would break.
    let refused = cluster.dida(&["operator", "remove", "Hello"]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("used by registered application(s) hello"),
        "{}",
        stderr(&refused)
    );
    let unregistered = cluster.dida(&["app", "remove", "hello"]);
    assert!(unregistered.status.success(), "{}", stderr(&unregistered));

    // Removing the name: new submits no longer find it.
    let removed = cluster.dida(&["operator", "remove", "Hello"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let gone = cluster
        .post("/v1/invoke", json!({"operators": ["Hello"]}))
        .await;
    assert_error(&gone, StatusCode::NOT_FOUND, "unknown operator Hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_bad_requests_with_json_errors() {
    let mut cluster = Cluster::start(1).await;
    cluster.start_workers().await;

    let malformed = cluster
        .http
        .send(
            Method::POST,
            &format!("{}/v1/invoke", cluster.gateway),
            Some(("application/json", b"{\"operators\": [".to_vec())),
        )
        .await
        .unwrap();
    assert_error(&malformed, StatusCode::BAD_REQUEST, "not the JSON expected");
    let unknown_field = cluster
        .post(
            "/v1/invoke",
            json!({"operators": ["EchoOperator"], "inputs": "x"}),
        )
        .await;
    assert_error(&unknown_field, StatusCode::BAD_REQUEST, "unknown field");
    let no_operators = cluster.post("/v1/invoke", json!({"operators": []})).await;
    assert_error(&no_operators, StatusCode::BAD_REQUEST, "no operator");
    let bad_app = cluster
        .put_text("/v1/apps/bad", "operator EchoOperator 0\nfrobnicate 1\n")
        .await;
    assert_error(&bad_app, StatusCode::BAD_REQUEST, "bad:2:");
    let bad_name = cluster
        .put_text("/v1/apps/.hidden", "operator EchoOperator 0\n")
        .await;
    assert_error(
        &bad_name,
        StatusCode::BAD_REQUEST,
        "invalid application name",
    );

    let unknown_app = cluster
        .post("/v1/apps/nope/invoke", json!({"input": "x"}))
        .await;
    assert_error(&unknown_app, StatusCode::NOT_FOUND, "unknown application");
    let unknown_operator = cluster
        .post("/v1/invoke", json!({"operators": ["NoSuchOperator"]}))
        .await;
    assert_error(
        &unknown_operator,
        StatusCode::NOT_FOUND,
        "unknown operator NoSuchOperator",
    );
    let app_of_unknown = cluster
        .put_text("/v1/apps/ghost", "operator NoSuchOperator 0\n")
        .await;
    assert_error(
        &app_of_unknown,
        StatusCode::NOT_FOUND,
        "unknown operator NoSuchOperator",
    );
    let unknown_execution = cluster.get("/v1/executions/no-such-id").await;
    assert_error(
        &unknown_execution,
        StatusCode::NOT_FOUND,
        "unknown execution",
    );
    let unknown_route = cluster.get("/v2/everything").await;
    assert_error(&unknown_route, StatusCode::NOT_FOUND, "no route");

    // The gateway answers 413 from the Content-Length, without reading the body,
    // and closes the connection: a client still writing the 3 MiB may see its
    // write fail (broken pipe) before it reads the answer. That is the client's
    // race, not the gateway's; a few attempts get the answer itself.
    let huge_input = "x".repeat(3 * 1024 * 1024);
    let mut attempts = 0;
    let too_large = loop {
        attempts += 1;
        match cluster
            .try_post(
                "/v1/invoke",
                json!({"operators": ["EchoOperator"], "input": huge_input}),
            )
            .await
        {
            Ok(response) => break response,
            Err(error) if attempts < 5 => eprintln!("attempt {attempts}: {error:#}"),
            Err(error) => panic!("no answer to a too-large body in 5 attempts: {error:#}"),
        }
    };
    assert_error(&too_large, StatusCode::PAYLOAD_TOO_LARGE, "the limit is");
    let over_input_limit = "x".repeat(1024 * 1024 + 1);
    let input_too_large = cluster
        .post(
            "/v1/invoke",
            json!({"operators": ["EchoOperator"], "input": over_input_limit}),
        )
        .await;
    assert_error(&input_too_large, StatusCode::BAD_REQUEST, "the input is");

    // 50 invocations at once: every one answered, every one right.
    let cluster = Arc::new(cluster);
    let calls = (0..50).map(|i| {
        let cluster = cluster.clone();
        async move {
            let response = cluster
                .post("/v1/invoke", json!({"operators": ["EchoOperator", "EchoOperator"], "input": format!("n{i}")}))
                .await;
            (i, response)
        }
    });
    let started = Instant::now();
    for (i, response) in futures::future::join_all(calls).await {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let body = response.json().unwrap();
        assert_eq!(body["status"], "succeeded", "{body}");
        assert_eq!(body["outputs"], json!([format!("n{i}"), format!("n{i}")]));
    }
    eprintln!(
        "50 concurrent invocations answered in {:?}",
        started.elapsed()
    );

    // No worker left to run it: 503.
    let mut cluster = Arc::into_inner(cluster).expect("the calls are done");
    cluster.kill_workers();
    let unavailable = cluster
        .post("/v1/invoke", json!({"operators": ["EchoOperator"]}))
        .await;
    assert_error(&unavailable, StatusCode::SERVICE_UNAVAILABLE, "w1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_changes_only_executions_submitted_after_it() {
    let mut cluster = Cluster::start(2).await;
    cluster.start_workers().await;
    let dir = tempfile::tempdir().unwrap();
    // Version 1 returns its input; version 2 reads a key nobody wrote: "none".
    let v1 = component_file(dir.path(), "EchoOperator", "v1.wasm");
    let v2 = component_file(dir.path(), "ReadOperator", "v2.wasm");
    let deploy = |file: &Path| {
        let output = cluster.dida(&[
            "operator",
            "deploy",
            "--name",
            "Greeter",
            file.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
    };
    deploy(&v1);

    // A stream of invocations, each noting when it was sent and answered.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let stream = {
        let http = cluster.http.clone();
        let url = format!("{}/v1/invoke", cluster.gateway);
        let (stop, answered) = (stop.clone(), answered.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let input = format!("in{n}");
                let sent = Instant::now();
                let response = http
                    .post_json(&url, &json!({"operators": ["Greeter"], "input": input}))
                    .await
                    .unwrap();
                results.push((sent, Instant::now(), input, response));
                answered.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            results
        })
    };
    // Redeploy mid-stream, once a few have run, and go on until as many more have.
    eventually(Duration::from_secs(60), "10 invocations", || async {
        (answered.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .await;
    let before = Instant::now();
    deploy(&v2);
    let after = Instant::now();
    let swapped_at = answered.load(Ordering::Relaxed);
    eventually(Duration::from_secs(60), "10 more invocations", || async {
        (answered.load(Ordering::Relaxed) >= swapped_at + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let results = stream.await.unwrap();

    let (mut old, mut new) = (0, 0);
    for (sent, answered, input, response) in &results {
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{input}: {}",
            response.body
        );
        let body = response.json().unwrap();
        assert_eq!(
            body["status"], "succeeded",
            "{input}: none may fail for the swap: {body}"
        );
        let output = body["outputs"][0].as_str().unwrap();
        let ran_v1 = output == input;
        let ran_v2 = output == "none";
        assert!(ran_v1 || ran_v2, "{input} ran neither version: {output:?}");
        if *answered < before {
            assert!(
                ran_v1,
                "{input} ended before the redeploy began, yet ran version 2"
            );
        }
        if *sent > after {
            assert!(
                ran_v2,
                "{input} was submitted after the redeploy, yet ran version 1"
            );
        }
        if ran_v1 {
            old += 1;
        } else {
            new += 1;
        }
    }
    assert!(old > 0 && new > 0, "{old} ran version 1, {new} version 2");
    eprintln!(
        "{} invocations: {old} ran version 1, {new} version 2",
        results.len()
    );
}
