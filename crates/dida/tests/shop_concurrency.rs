//! The shop example under contention, against real processes on loopback: 5 `dida
//! storage` nodes, a `dida scheduler` and 3 `dida worker`s.
//!
//! `ReserveStockOperator` and `ChargeOperator` take a unit of stock and add to the
//! revenue with compare-and-swap retry loops. Within one execution every read of a
//! key returns the version the execution pinned first (SPEC §4), so a retry that
//! re-read with `read` saw the same stale value forever and concurrent orders failed;
//! the retries now use `read-latest`. Here 8 orders of an item with 5 units in stock
//! are held by the `AwaitKeyOperator` fixture and released at once, so they really
//! race: exactly 5 must succeed, 3 must fail with "out of stock", and no update may
//! be lost (stock 0, revenue 5 × price).
//!
//! Nothing sleeps and hopes: every "eventually" is a poll with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dida_core::Record;
use dida_local_cluster::{ClusterSpec, ComputeSpec, LocalCluster};
use dida_proto::execution::scheduler_client::SchedulerClient;
use dida_proto::execution::SubmitRequest;
use dida_proto::transport::lazy_channel;
use dida_proto::transport::NodeChannel;
use dida_storage_client::StorageClient;

mod support;
use support::{dida, eventually, outcome};

/// Submits `operators` with `input`; returns the execution id.
async fn submit(
    scheduler: &SchedulerClient<NodeChannel>,
    operators: &[&str],
    input: &str,
) -> String {
    scheduler
        .clone()
        .submit(SubmitRequest {
            app: "shop-concurrency".to_string(),
            operators: operators.iter().map(|s| s.to_string()).collect(),
            input: input.to_string(),
        })
        .await
        .unwrap_or_else(|s| panic!("submit {operators:?} refused: {}", s.message()))
        .into_inner()
        .execution_id
}

/// The newest record of `key` at its primary, which executes every write of the key.
async fn at_primary(storage: &StorageClient, key: &str) -> Option<Record> {
    storage
        .read_from(storage.primary(key), key, None)
        .await
        .unwrap_or_else(|e| panic!("read {key} at its primary: {e}"))
}

/// Waits until every replica of `key` holds `value` as its newest value.
async fn everywhere(storage: &StorageClient, key: &str, value: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("every replica of {key} to hold {value:?}"),
        || async {
            for replica in storage.replicas(key) {
                let record = storage.read_from(replica, key, None).await.ok()??;
                if record.value != value {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// 8 concurrent orders of an item with 5 units in stock: 5 succeed, 3 fail with
/// "out of stock", and every unit taken is charged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_lose_no_update() {
    const ORDERS: usize = 8;
    const STOCK: u64 = 5;
    const PRICE: u64 = 12;
    const ITEM: &str = "book";

    let mut cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            // Replicas lag the primary, so a first read served by one of them is often
            // stale: a retry must ask the primary to make progress.
            gossip_delays_ms: vec![100; 5],
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
                operators_dir: Some(dida_operators::fixtures_dir().to_path_buf()),
                ..ComputeSpec::default()
            },
        )
        .await
        .unwrap();
    // Outcome calls wait up to 5 s on the scheduler; the deadline covers it.
    let channel = lazy_channel(cluster.scheduler_url().unwrap(), Duration::from_secs(20))
        .expect("scheduler channel");
    let scheduler = SchedulerClient::new(channel);
    let storage = Arc::new(cluster.client().unwrap());

    // The shop's data, as examples/puppetmaster/data/shop.txt lays it out, on every
    // replica before any order reads it.
    let stock_key = format!("stock:{ITEM}");
    let price_key = format!("price:{ITEM}");
    let seed = [
        (stock_key.as_str(), STOCK.to_string()),
        (price_key.as_str(), PRICE.to_string()),
        ("revenue", "0".to_string()),
    ];
    for (key, value) in &seed {
        storage.write(key, value).await.unwrap();
    }
    for (key, value) in &seed {
        everywhere(&storage, key, value).await;
    }

    // Every order waits in AwaitKeyOperator for key `book-go`, then runs the shop.
    let chain = [
        "AwaitKeyOperator",
        "ReserveStockOperator",
        "ChargeOperator",
        "ConfirmOrderOperator",
    ];
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        ids.push(submit(&scheduler, &chain, ITEM).await);
    }
    let started = Instant::now();
    storage.write(&format!("{ITEM}-go"), "go").await.unwrap();

    let mut succeeded = Vec::new();
    let mut out_of_stock = 0;
    for id in &ids {
        let outcome = outcome(&scheduler, id).await;
        match outcome.error.as_deref() {
            None => {
                assert_eq!(outcome.outputs.len(), chain.len(), "{outcome:?}");
                assert!(
                    outcome.outputs[2].starts_with(&format!("charged {PRICE} for {ITEM}")),
                    "{outcome:?}"
                );
                succeeded.push(id.clone());
            }
            Some(error) => {
                assert!(
                    error.contains(&format!("out of stock: {ITEM}")),
                    "an order failed for another reason than the stock: {outcome:?}"
                );
                assert_eq!(
                    outcome.failed_operator.as_deref(),
                    Some("ReserveStockOperator"),
                    "{outcome:?}"
                );
                out_of_stock += 1;
            }
        }
    }
    eprintln!(
        "{ORDERS} concurrent orders finished {:?} after their release",
        started.elapsed()
    );
    assert_eq!(succeeded.len(), STOCK as usize, "orders that succeeded");
    assert_eq!(out_of_stock, ORDERS - STOCK as usize, "orders out of stock");

    // No lost update: every unit taken was charged exactly once.
    let stock = at_primary(&storage, &stock_key).await.expect("stock key");
    assert_eq!(stock.value, "0", "stock left");
    assert_eq!(
        stock.version.number,
        1 + STOCK,
        "the seed plus one applied compare-and-swap per unit sold"
    );
    let revenue = at_primary(&storage, "revenue").await.expect("revenue key");
    assert_eq!(revenue.value, (STOCK * PRICE).to_string(), "revenue");
    assert_eq!(
        revenue.version.number,
        1 + STOCK,
        "the seed plus one applied compare-and-swap per order charged"
    );
    // Every successful order was recorded.
    for id in &succeeded {
        let order = at_primary(&storage, &format!("order:{id}")).await;
        assert_eq!(
            order.map(|r| r.value).as_deref(),
            Some(format!("confirmed {ITEM}").as_str()),
            "order {id}"
        );
    }
}
