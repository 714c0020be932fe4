//! A whole storage cluster inside one process: fast tests of forwarding, anti-entropy
//! repair and input validation on the wire.

use std::time::{Duration, Instant};

use dida_core::{Membership, Record, Version};
use dida_proto::storage::storage_client::StorageClient as RawClient;
use dida_proto::storage::WriteRequest;
use dida_storage::node::start;
use dida_storage::{NodeHandle, StorageConfig};
use dida_storage_client::{ClientConfig, StorageClient};
use tokio::net::TcpListener;

/// Starts `n` nodes on ephemeral loopback ports with the given replication factor.
async fn cluster(n: usize, replication_factor: usize) -> (Vec<NodeHandle>, Membership) {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let membership = Membership::new(listeners.iter().enumerate().map(|(i, l)| {
        (
            format!("s{}", i + 1),
            format!("http://{}", l.local_addr().unwrap()),
        )
    }))
    .unwrap();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut config = StorageConfig::new(format!("s{}", i + 1), membership.clone());
        config.replication_factor = replication_factor;
        config.anti_entropy_interval = Duration::from_millis(50);
        nodes.push(start(config, listener).await.unwrap());
    }
    client(&membership, replication_factor)
        .wait_until_all_alive(Duration::from_secs(10))
        .await
        .expect("every node joins");
    (nodes, membership)
}

fn client(membership: &Membership, replication_factor: usize) -> StorageClient {
    StorageClient::new(
        membership.clone(),
        ClientConfig {
            replication_factor,
            ..ClientConfig::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn anti_entropy_repairs_a_record_that_gossip_never_delivered() {
    let (nodes, membership) = cluster(4, 3).await;
    let client = client(&membership, 3);
    let key = "repaired";
    let replicas: Vec<usize> = client
        .replicas(key)
        .iter()
        .map(|id| membership.index_of(id).unwrap())
        .collect();
    // Plant a version on one replica only, as if every push of it had been lost.
    let planted = Record {
        key: key.into(),
        version: Version::new(7, 1),
        value: "only-here".into(),
    };
    assert!(nodes[replicas[2]].store().merge(&planted));

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let everywhere = replicas
            .iter()
            .all(|&r| nodes[r].store().read(key, Some(planted.version)).is_some());
        if everywhere {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anti-entropy did not repair the replicas"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outsider = (0..4).find(|i| !replicas.contains(i)).unwrap();
    assert_eq!(
        nodes[outsider].store().read(key, None),
        None,
        "non-replicas never receive it"
    );
}

#[tokio::test]
async fn any_node_serves_any_request_by_forwarding() {
    let (_nodes, membership) = cluster(4, 2).await;
    let client = client(&membership, 2);
    let key = "forwarded";
    let outsider = membership
        .ids()
        .find(|id| !client.replicas(key).contains(id))
        .unwrap()
        .to_string();
    let version = client.write_via(&outsider, key, "v1").await.unwrap();
    let primary = membership.get(client.primary(key)).unwrap();
    assert_eq!(version.replica, primary.replica);
    let record = client
        .read_from(&outsider, key, Some(version))
        .await
        .unwrap();
    assert_eq!(record.unwrap().value, "v1");
}

#[tokio::test]
async fn oversized_and_empty_keys_are_refused_on_the_wire() {
    let (nodes, _membership) = cluster(1, 1).await;
    let mut raw = RawClient::connect(format!("http://{}", nodes[0].local_addr()))
        .await
        .unwrap();
    let cases = [
        (
            "k".repeat(5000),
            "v".to_string(),
            "the key is 5000 bytes long",
        ),
        (String::new(), "v".to_string(), "the key is empty"),
        (
            "k".to_string(),
            "v".repeat(2 * 1024 * 1024),
            "the limit is 1048576",
        ),
    ];
    for (key, value, expected) in cases {
        let status = raw
            .write(WriteRequest {
                key,
                value,
                forwarded: false,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(expected), "{}", status.message());
    }
    assert_eq!(nodes[0].store().counts(), (0, 0), "nothing was stored");
}
