//! A node that cannot start says why with an error callers can match: the setting
//! at fault, or the data directory's problem — never a message to parse.

use std::str::FromStr;
use std::time::Duration;

use dida_core::membership::NodeUrl;
use dida_core::{Membership, MembershipError};
use dida_storage::config::FsyncPolicy;
use dida_storage::node::start;
use dida_storage::{ConfigError, DurabilityError, StorageConfig, StorageError};
use tokio::net::TcpListener;

fn config() -> StorageConfig {
    let membership = Membership::new(
        (1..=3).map(|i| (format!("s{i}"), format!("http://127.0.0.1:{}", 7000 + i))),
    )
    .expect("a valid membership");
    StorageConfig::new("s1", membership)
}

/// A change that makes a valid configuration invalid.
type Breakage = fn(&mut StorageConfig);

#[test]
fn each_invalid_setting_is_its_own_variant() {
    assert_eq!(config().validate(), Ok(()));
    let cases: Vec<(Breakage, ConfigError)> = vec![
        (
            |c| c.replication_factor = 0,
            ConfigError::Zero {
                flag: "--replication-factor",
            },
        ),
        (
            |c| c.max_versions = 0,
            ConfigError::Zero {
                flag: "--max-versions",
            },
        ),
        (|c| c.vnodes = 0, ConfigError::Zero { flag: "--vnodes" }),
        (
            |c| c.write_acks = 4,
            ConfigError::WriteAcks {
                write_acks: 4,
                replication_factor: 3,
            },
        ),
        (
            |c| c.write_acks = 0,
            ConfigError::WriteAcks {
                write_acks: 0,
                replication_factor: 3,
            },
        ),
        (
            |c| c.anti_entropy_interval = Duration::ZERO,
            ConfigError::NotPositive {
                what: "the anti-entropy interval",
            },
        ),
        (
            |c| c.probe_timeout = Duration::ZERO,
            ConfigError::NotPositive {
                what: "the probe interval and probe timeout",
            },
        ),
    ];
    for (change, expected) in cases {
        let mut config = config();
        change(&mut config);
        assert_eq!(config.validate(), Err(expected));
    }
    // A route to a node that is no member yet is kept for when it joins.
    let mut routed = config();
    routed.dial_overrides.insert(
        "s9".to_string(),
        NodeUrl::parse("http://127.0.0.1:9").expect("a valid URL"),
    );
    assert_eq!(routed.validate(), Ok(()));
    let mut stranger = config();
    stranger.id = "s9".to_string();
    assert!(matches!(
        stranger.validate(),
        Err(ConfigError::Membership(MembershipError::UnknownNode { .. }))
    ));
}

#[test]
fn an_unknown_fsync_policy_is_named() {
    assert_eq!(FsyncPolicy::from_str("batch"), Ok(FsyncPolicy::Batch));
    assert_eq!(
        FsyncPolicy::from_str("sometimes"),
        Err(ConfigError::FsyncPolicy("sometimes".to_string()))
    );
}

#[tokio::test]
async fn start_refuses_bad_settings_and_a_busy_data_directory_by_variant() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let mut bad = config();
    bad.write_acks = 5;
    let error = start(bad, listener).await.expect_err("refused");
    assert!(
        matches!(
            error,
            StorageError::Config(ConfigError::WriteAcks { write_acks: 5, .. })
        ),
        "{error:?}"
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut durable = config();
    durable.data_dir = Some(dir.path().to_path_buf());
    let first = start(
        durable.clone(),
        TcpListener::bind("127.0.0.1:0").await.expect("a port"),
    )
    .await
    .expect("the first node starts");
    let error = start(
        durable,
        TcpListener::bind("127.0.0.1:0").await.expect("a port"),
    )
    .await
    .expect_err("the directory is in use");
    assert!(
        matches!(&error, StorageError::Durability(DurabilityError::InUse { dir: busy, .. }) if busy == dir.path()),
        "{error:?}"
    );
    first.shutdown().await.expect("a clean shutdown");
}
