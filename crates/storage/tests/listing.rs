//! `ListRecords` on a real node (in-process, on loopback): a node's records come in
//! pages of bounded size whatever the node holds, and only a few listings run at
//! once — the others are told the node is busy.

use std::time::{Duration, Instant};

use dida_core::Membership;
use dida_proto::storage::storage_client::StorageClient as RawClient;
use dida_proto::storage::ListRecordsRequest;
use dida_storage::listing::{LIST_PAGE_BYTES, MAX_CONCURRENT_LISTINGS};
use dida_storage::node::start;
use dida_storage::{NodeHandle, StorageConfig};
use dida_storage_client::{ClientConfig, StorageClient};
use futures::future::join_all;
use prost::Message;
use tokio::net::TcpListener;

/// One storage node holding `keys` keys of `value_bytes` each, and its client.
async fn node_with(keys: usize, value_bytes: usize) -> (NodeHandle, StorageClient, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let membership = Membership::new([("s1".to_string(), url.clone())]).unwrap();
    let mut config = StorageConfig::new("s1".to_string(), membership.clone());
    config.replication_factor = 1;
    let node = start(config, listener).await.unwrap();
    let client = StorageClient::new(
        membership,
        ClientConfig {
            replication_factor: 1,
            ..ClientConfig::default()
        },
    )
    .unwrap();
    client
        .wait_until_all_alive(Duration::from_secs(10))
        .await
        .unwrap();
    let value = "v".repeat(value_bytes);
    for batch in (0..keys).collect::<Vec<_>>().chunks(256) {
        let keys: Vec<String> = batch.iter().map(|i| format!("key{i:06}")).collect();
        let writes = keys.iter().map(|key| client.write_via("s1", key, &value));
        for written in join_all(writes).await {
            written.unwrap();
        }
    }
    (node, client, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_node_is_listed_in_bounded_pages_in_key_order() {
    let (_node, client, url) = node_with(3000, 1024).await;
    let mut raw = RawClient::connect(url).await.unwrap();
    let mut pages = raw
        .list_records(ListRecordsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (mut count, mut page_count, mut largest) = (0, 0, 0);
    while let Some(page) = pages.message().await.unwrap() {
        page_count += 1;
        largest = largest.max(page.encoded_len());
        count += page.records.len();
    }
    assert_eq!(count, 3000);
    assert!(page_count > 1, "3 MB came in one page");
    assert!(
        largest <= LIST_PAGE_BYTES + 2048,
        "a page of {largest} bytes is over the bound"
    );

    let listed = client.list("s1").await.unwrap();
    assert_eq!(listed.len(), 3000);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_beyond_the_limit_are_refused_as_busy_and_the_node_serves_on() {
    let (_node, client, url) = node_with(2000, 4096).await;
    // Each held listing is opened and never read: it keeps its slot while the
    // transport's flow-control window is full.
    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT_LISTINGS {
        let mut raw = RawClient::connect(url.clone()).await.unwrap();
        held.push(
            raw.list_records(ListRecordsRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let mut raw = RawClient::connect(url.clone()).await.unwrap();
    let refused = raw
        .list_records(ListRecordsRequest {})
        .await
        .expect_err("a listing beyond the limit must be refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("try again later"), "{refused}");

    // Reads and writes are not held up by the listings.
    client.write("after", "x").await.unwrap();
    assert_eq!(
        client.read("after", None).await.unwrap().unwrap().value,
        "x"
    );

    // Readers that go away give their slots back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.list("s1").await {
            Ok(records) => {
                assert_eq!(records.len(), 2001);
                break;
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("not yet: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("slots were not given back: {error}"),
        }
    }
}
