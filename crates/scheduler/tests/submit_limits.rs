//! Submits a hostile client could send, against a real scheduler (in-process, on
//! loopback) whose only worker is not there: every one is refused at once, with the
//! right code and a message saying why, and the scheduler keeps serving. Oversized
//! inputs and operator lists are refused before anything is allocated or any worker
//! asked; arbitrary ones (proptest, a fixed case budget) never make it panic.

use std::time::Duration;

use dida_core::limits::{MAX_CHAIN_OPERATORS, MAX_INPUT_BYTES};
use dida_core::membership::NodeUrl;
use dida_core::Membership;
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::{SchedulerStatusRequest, SubmitRequest};
use dida_proto::transport::NodeChannel;
use dida_proto::transport::{lazy_channel, MAX_MESSAGE_BYTES};
use dida_scheduler::{NodeHandle, SchedulerConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::net::TcpListener;
use tonic::Code;

/// A loopback address nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

async fn scheduler() -> (NodeHandle, SchedulerClient<NodeChannel>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let workers = Membership::parse(&format!("w1={}", closed_port().await)).unwrap();
    let mut config = SchedulerConfig::new("sched", NodeUrl::parse(&url).unwrap(), Some(workers));
    config.rpc_deadline = Duration::from_secs(2);
    let handle = dida_scheduler::node::start(config, listener).await.unwrap();
    let client = SchedulerClient::new(lazy_channel(&url, Duration::from_secs(10)).unwrap())
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    (handle, client)
}

fn submit(operators: &[&str], input: String) -> SubmitRequest {
    SubmitRequest {
        app: "app.txt".into(),
        operators: operators.iter().map(|s| s.to_string()).collect(),
        input,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_submits_are_refused_at_once_saying_which_limit() {
    let (handle, mut client) = scheduler().await;

    // 10 MiB of input: refused before any worker is asked.
    let refused = client
        .submit(submit(&["EchoOperator"], "x".repeat(10 * 1024 * 1024)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("the input is 10485760 bytes long; the limit is 1048576"),
        "{refused:?}"
    );

    let long_chain = vec!["EchoOperator"; MAX_CHAIN_OPERATORS + 1];
    let refused = client
        .submit(submit(&long_chain, "in".into()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("operators; the limit is 10001"),
        "{refused:?}"
    );

    let mut long_app = submit(&["EchoOperator"], "in".into());
    long_app.app = "a".repeat(5000);
    let refused = client.submit(long_app).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("application name"),
        "{refused:?}"
    );

    for (operators, expected) in [
        (vec![], "no operator"),
        (vec!["../evil"], "invalid operator name"),
    ] {
        let refused = client
            .submit(submit(&operators, "in".into()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(expected), "{refused:?}");
    }

    // At the limit the input passes validation: what stops it is the absent worker.
    let at_limit = client
        .submit(submit(&["EchoOperator"], "x".repeat(MAX_INPUT_BYTES)))
        .await
        .unwrap_err();
    assert_eq!(at_limit.code(), Code::Unavailable, "{at_limit:?}");
    assert!(at_limit.message().contains("worker w1"), "{at_limit:?}");
    handle.shutdown().await.unwrap();
}

/// Arbitrary submits (operator lists of any names, inputs of any text and around the
/// limit) never crash the scheduler: each is refused with INVALID_ARGUMENT or, if it
/// is valid, UNAVAILABLE (no worker), always with a message.
#[test]
fn arbitrary_submits_never_crash_the_scheduler() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (handle, client) = runtime.block_on(scheduler());
    let operator = prop_oneof![
        3 => "[A-Z][a-zA-Z0-9_]{0,12}",
        1 => any::<String>(),
        1 => Just("a".repeat(129)),
    ];
    let input = prop_oneof![
        4 => any::<String>(),
        1 => (0usize..3).prop_map(|k| "i".repeat(MAX_INPUT_BYTES - 1 + k)),
    ];
    let strategy = (
        proptest::collection::vec(operator, 0..8),
        input,
        any::<String>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 128,
        ..Config::default()
    });
    runner
        .run(&strategy, |(operators, input, app)| {
            // An empty list is refused first; any other list lets the input's size show.
            let oversized = input.len() > MAX_INPUT_BYTES && !operators.is_empty();
            let request = SubmitRequest {
                app,
                operators,
                input,
            };
            let status = runtime
                .block_on(client.clone().submit(request))
                .expect_err("no worker can run anything");
            prop_assert!(!status.message().is_empty());
            prop_assert!(
                matches!(status.code(), Code::InvalidArgument | Code::Unavailable),
                "{status:?}"
            );
            if oversized {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                prop_assert!(status.message().contains("the input is"));
            }
            Ok(())
        })
        .unwrap();
    // Still serving.
    runtime
        .block_on(client.clone().status(SchedulerStatusRequest {}))
        .unwrap();
    runtime.block_on(handle.shutdown()).unwrap();
}
