//! Every replication-service handler refuses what a peer could not legitimately
//! send — unknown senders, versions that cannot be followed, replica numbers no
//! member has, views naming strangers, ranges that do not exist — with a status
//! naming what was wrong, and the refusal changes nothing: each test compares the
//! node's store and view before and after. A forged or stale cluster
//! configuration is refused or ignored alike.
//!
//! The node under test runs in process with its background protocols over a
//! transport whose every call is refused as if no peer were running: it then
//! joins at once (no peer to catch up from) and sees every peer alive at
//! incarnation 0, as at the start of a cluster.

use std::sync::Arc;
use std::time::Duration;

use dida_core::membership::NodeUrl;
use dida_core::version::VersionError;
use dida_core::{MemberState, Membership, Record, Ring, Version};
use dida_proto::convert::config_to_wire;
use dida_proto::storage::{ClusterConfig as WireConfig, Standing as WireStanding};
use dida_proto::storage::{
    ConfigAcceptReply, ConfigAcceptRequest, ConfigCommitReply, ConfigCommitRequest,
    ConfigPrepareReply, ConfigPrepareRequest, DigestReply, DigestRequest, FetchKeyReply,
    FetchKeyRequest, HandbackReply, HandbackRequest, Liveness as WireLiveness, MemberView,
    ProbeForReply, ProbeForRequest, ProbeReply, ProbeRequest, PushReply, PushRequest, RangeDigest,
    ReadReply, ReadRequest, Record as WireRecord, UpdateIfValueIsReply, UpdateIfValueIsRequest,
    Version as WireVersion, WriteReply, WriteRequest,
};
use dida_storage::{Node, PeerTransport, StorageConfig};
use tonic::{Code, Status};

const IDS: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];
const VNODES: u32 = 16;
const REPLICATION_FACTOR: usize = 3;

/// Every call fails as a refused connection: no peer runs.
#[derive(Debug)]
struct NoPeers;

fn refused() -> Status {
    let mut status = Status::unavailable("connection refused (test)");
    status.set_source(Arc::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "connect error: connection refused",
    )));
    status
}

#[tonic::async_trait]
impl PeerTransport for NoPeers {
    fn add_peer(&self, _: usize, _: &str, _: &NodeUrl) -> Result<(), String> {
        Ok(())
    }
    async fn push(&self, _: usize, _: PushRequest) -> Result<PushReply, Status> {
        Err(refused())
    }
    async fn probe(&self, _: usize, _: ProbeRequest) -> Result<ProbeReply, Status> {
        Err(refused())
    }
    async fn probe_for(&self, _: usize, _: ProbeForRequest) -> Result<ProbeForReply, Status> {
        Err(refused())
    }
    async fn sync_digests(&self, _: usize, _: DigestRequest) -> Result<DigestReply, Status> {
        Err(refused())
    }
    async fn fetch_key(&self, _: usize, _: FetchKeyRequest) -> Result<FetchKeyReply, Status> {
        Err(refused())
    }
    async fn handback(&self, _: usize, _: HandbackRequest) -> Result<HandbackReply, Status> {
        Err(refused())
    }
    async fn config_prepare(
        &self,
        _: usize,
        _: ConfigPrepareRequest,
    ) -> Result<ConfigPrepareReply, Status> {
        Err(refused())
    }
    async fn config_accept(
        &self,
        _: usize,
        _: ConfigAcceptRequest,
    ) -> Result<ConfigAcceptReply, Status> {
        Err(refused())
    }
    async fn config_commit(
        &self,
        _: usize,
        _: ConfigCommitRequest,
    ) -> Result<ConfigCommitReply, Status> {
        Err(refused())
    }
    async fn read(&self, _: usize, _: ReadRequest) -> Result<ReadReply, Status> {
        Err(refused())
    }
    async fn write(&self, _: usize, _: WriteRequest) -> Result<WriteReply, Status> {
        Err(refused())
    }
    async fn update_if_value_is(
        &self,
        _: usize,
        _: UpdateIfValueIsRequest,
    ) -> Result<UpdateIfValueIsReply, Status> {
        Err(refused())
    }
}

fn membership() -> Membership {
    Membership::new(
        IDS.iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), format!("http://127.0.0.1:{}", 7001 + i))),
    )
    .unwrap()
}

fn ring() -> Ring {
    Ring::new(&IDS, VNODES, REPLICATION_FACTOR)
}

/// Node `s1` (index 0), alive, its protocols running.
async fn node() -> Arc<Node> {
    let mut config = StorageConfig::new("s1".to_string(), membership());
    config.vnodes = VNODES;
    config.replication_factor = REPLICATION_FACTOR;
    config.incarnation = 10;
    let node = Arc::new(Node::new(config, Arc::new(NoPeers)).unwrap());
    for task in node.background_tasks() {
        tokio::spawn(task);
    }
    let alive = MemberState {
        incarnation: 10,
        liveness: dida_core::Liveness::Alive,
    };
    for _ in 0..200 {
        if node.member_states()[0].1 == alive {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("s1 did not turn alive: {:?}", node.member_states());
}

/// What a refusal must leave as it was: every record held and the whole view.
fn snapshot(node: &Node) -> (Vec<Record>, Vec<(String, MemberState)>, bool) {
    (
        node.store().records(),
        node.member_states(),
        node.is_fenced(),
    )
}

/// A key whose replicas (all nodes alive) satisfy `wanted`.
fn key_where(wanted: impl Fn(&[usize]) -> bool) -> String {
    let ring = ring();
    (0..10_000)
        .map(|i| format!("key-{i}"))
        .find(|key| wanted(ring.replicas(key)))
        .expect("some key fits")
}

fn wire_record(key: &str, number: u64, replica: u32) -> WireRecord {
    WireRecord {
        key: key.to_string(),
        version: Some(WireVersion { number, replica }),
        value: "v".to_string(),
    }
}

fn push(from: &str, incarnation: u64, records: Vec<WireRecord>) -> PushRequest {
    PushRequest {
        from: from.to_string(),
        records,
        incarnation,
        handoff: false,
    }
}

fn entry(id: &str, incarnation: u64, liveness: WireLiveness) -> MemberView {
    MemberView {
        id: id.to_string(),
        incarnation,
        liveness: liveness as i32,
    }
}

/// Asserts `result` failed with `code` and a message containing each of `says`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, says: &[&str]) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{}", status.message());
    for words in says {
        assert!(
            status.message().contains(words),
            "{:?} does not say {words:?}",
            status.message()
        );
    }
}

fn commit(from: &str, decided: WireConfig) -> ConfigCommitRequest {
    ConfigCommitRequest {
        from: from.to_string(),
        decided: Some(decided),
    }
}

/// This cluster's configuration on the wire, with `changes` (index, standing)
/// applied and the given epoch.
fn config(node: &Node, epoch: u64, changes: &[(usize, WireStanding)]) -> WireConfig {
    let mut wire = config_to_wire(&node.cluster_config());
    wire.epoch = epoch;
    for &(index, standing) in changes {
        wire.members[index].standing = standing as i32;
    }
    wire
}

#[tokio::test]
async fn a_forged_or_stale_configuration_changes_nothing() {
    let node = node().await;
    let first = node.cluster_config();
    assert_eq!(first.epoch, 0);
    let leaving = config(&node, 1, &[(4, WireStanding::Leaving)]);

    // Malformed, or from a stranger: refused before anything is looked at.
    assert_refused(
        node.config_commit(commit("mallory", leaving.clone())).await,
        Code::InvalidArgument,
        &["not a storage node of this cluster"],
    );
    let mut huge = leaving.clone();
    huge.members = (0..2000)
        .map(|i| dida_proto::storage::ClusterMember {
            id: format!("n{i}"),
            url: format!("http://127.0.0.1:{}", 10_000 + i),
            standing: 0,
        })
        .collect();
    let mut twice = leaving.clone();
    twice.members[1].id = "s1".into();
    let mut unknown = leaving.clone();
    unknown.members[2].standing = 7;
    for (forged, says) in [
        (huge, "1 to 1024 members"),
        (twice, "listed twice"),
        (unknown, "unknown standing"),
    ] {
        assert_refused(
            node.config_commit(commit("s2", forged)).await,
            Code::InvalidArgument,
            &[says],
        );
    }
    assert_refused(
        node.config_prepare(ConfigPrepareRequest {
            from: "s2".into(),
            base: None,
            ballot: None,
        })
        .await,
        Code::InvalidArgument,
        &["base is missing"],
    );

    // Well formed but not a configuration of this cluster's history: ignored.
    let mut other_cluster = leaving.clone();
    other_cluster.cluster_id = "another".into();
    let mut reordered = leaving.clone();
    reordered.members.swap(0, 1);
    for forged in [other_cluster, reordered] {
        node.config_commit(commit("s2", forged)).await.unwrap();
        assert_eq!(node.cluster_config(), first);
    }

    // A decided leave is adopted: s5 is out of every ring.
    node.config_commit(commit("s2", leaving.clone()))
        .await
        .unwrap();
    assert_eq!(node.cluster_config().epoch, 1);
    let ring = node.ring();
    assert!((0..200).all(|k| !ring.replicas(&format!("k{k}")).contains(&4)));

    // A standing never moves back, and an older epoch is no news.
    let back = config(&node, 2, &[(4, WireStanding::Active)]);
    node.config_commit(commit("s3", back)).await.unwrap();
    node.config_commit(commit("s3", config(&node, 0, &[])))
        .await
        .unwrap();
    assert_eq!(node.cluster_config().epoch, 1);

    // An accept of two changes at once is refused; nothing is accepted.
    let base = config(&node, 1, &[(4, WireStanding::Leaving)]);
    let two = config(
        &node,
        2,
        &[(4, WireStanding::Removed), (3, WireStanding::Leaving)],
    );
    let accepted = node
        .config_accept(ConfigAcceptRequest {
            from: "s2".into(),
            base: Some(base),
            ballot: Some(dida_proto::storage::Ballot {
                round: 1,
                proposer: 2,
            }),
            value: Some(two),
        })
        .await
        .unwrap();
    assert!(!accepted.accepted);
    assert_eq!(node.cluster_config().epoch, 1);
}

#[tokio::test]
async fn a_push_from_a_non_member_or_from_the_node_itself_is_refused() {
    let node = node().await;
    let key = key_where(|r| r.contains(&0) && r.contains(&1));
    let before = snapshot(&node);
    for from in ["", "s99", "S2", "s1"] {
        let forged = push(from, 1, vec![wire_record(&key, 3, 2)]);
        assert_refused(
            node.push(forged).await,
            Code::InvalidArgument,
            &["node s1 refused a push", "nothing was changed"],
        );
    }
    assert_eq!(snapshot(&node), before);
    // The same push from a member that replicates the key is stored.
    let applied = node
        .push(push("s2", 1, vec![wire_record(&key, 3, 2)]))
        .await;
    assert_eq!(applied.unwrap().applied, 1);
}

#[tokio::test]
async fn a_push_of_a_version_that_cannot_be_followed_or_of_no_member_is_refused() {
    let node = node().await;
    let key = key_where(|r| r.contains(&0) && r.contains(&1));
    let before = snapshot(&node);
    for (number, replica, says) in [
        (0, 0, "number 0"),
        (0, 2, "number 0"),
        (5, 0, "replica 0"),
        (5, 99, "replica 99"),
        (5, u32::MAX, "replica 4294967295"),
        (u64::MAX, 2, "above the highest"),
        (Version::MAX_NUMBER + 1, 2, "above the highest"),
    ] {
        // A valid record first: the push is refused whole, so it is not kept.
        let records = vec![wire_record(&key, 1, 2), wire_record(&key, number, replica)];
        assert_refused(
            node.push(push("s2", 1, records)).await,
            Code::InvalidArgument,
            &[says, "nothing was changed"],
        );
    }
    let mut unversioned = wire_record(&key, 1, 2);
    unversioned.version = None;
    assert_refused(
        node.push(push("s2", 1, vec![unversioned])).await,
        Code::InvalidArgument,
        &["has no version"],
    );
    assert_refused(
        node.push(push("s2", u64::MAX, vec![wire_record(&key, 1, 2)]))
            .await,
        Code::InvalidArgument,
        &["incarnation 18446744073709551615"],
    );
    assert_eq!(snapshot(&node), before);
}

#[tokio::test]
async fn a_push_is_stored_only_if_the_sender_and_the_receiver_replicate_every_key() {
    let node = node().await;
    let shared = key_where(|r| r.contains(&0) && r.contains(&1));
    let not_senders = key_where(|r| r.contains(&0) && !r.contains(&1));
    let not_mine = key_where(|r| !r.contains(&0) && r.contains(&1));
    let before = snapshot(&node);
    assert_refused(
        node.push(push(
            "s2",
            1,
            vec![wire_record(&shared, 1, 2), wire_record(&not_senders, 1, 2)],
        ))
        .await,
        Code::FailedPrecondition,
        &[
            "the sender s2 does not replicate",
            &not_senders,
            "nothing was stored",
        ],
    );
    assert_refused(
        node.push(push("s2", 1, vec![wire_record(&not_mine, 1, 2)]))
            .await,
        Code::FailedPrecondition,
        &["this node does not replicate", &not_mine],
    );
    assert_eq!(snapshot(&node), before);
}

/// A handoff push: records of ranges the sender no longer replicates.
fn handoff(from: &str, incarnation: u64, records: Vec<WireRecord>) -> PushRequest {
    PushRequest {
        handoff: true,
        ..push(from, incarnation, records)
    }
}

#[tokio::test]
async fn a_handoff_reaches_a_replica_only_from_a_member_in_its_ring() {
    let node = node().await;
    let ring = ring();
    let not_senders = key_where(|r| r.contains(&0) && !r.contains(&1));
    let not_mine = key_where(|r| !r.contains(&0) && r.contains(&1));
    let before = snapshot(&node);
    assert_refused(
        node.push(handoff("s2", 1, vec![wire_record(&not_mine, 1, 2)]))
            .await,
        Code::FailedPrecondition,
        &["this node does not replicate", &not_mine],
    );
    // The ranges a handoff compares are the receiver's and not the sender's.
    let both = (0..ring.range_count() as u32)
        .find(|&r| ring.range_replicas(r).contains(&0) && ring.range_replicas(r).contains(&1))
        .expect("a range both replicate");
    let request = |range| DigestRequest {
        from: "s2".to_string(),
        ring_fingerprint: ring.fingerprint(),
        ranges: vec![RangeDigest { range, digest: 1 }],
        handoff: true,
    };
    assert_refused(
        node.sync_digests(request(both)).await,
        Code::InvalidArgument,
        &["one this node replicates and the sender does not"],
    );
    assert_eq!(snapshot(&node), before);
    let handed = ring.range_of(&not_senders);
    assert!(node.sync_digests(request(handed)).await.is_ok());
    node.push(handoff("s2", 1, vec![wire_record(&not_senders, 1, 2)]))
        .await
        .expect("a handoff of a key this node replicates, from a member in its ring");
    assert_eq!(node.store().read(&not_senders, None).unwrap().value, "v");

    // A member out of the ring (here joining) holds nothing it may hand off.
    let joining = ProbeRequest {
        from: "s2".to_string(),
        view: vec![entry("s2", 4, WireLiveness::Joining)],
        config_epoch: 0,
    };
    node.probe(joining).await.unwrap();
    let before = snapshot(&node);
    assert_refused(
        node.push(handoff("s2", 4, vec![wire_record(&not_senders, 2, 2)]))
            .await,
        Code::FailedPrecondition,
        &["is not alive in its view", "nothing was stored"],
    );
    assert_eq!(snapshot(&node), before);
}

#[tokio::test]
async fn a_push_of_an_incarnation_declared_failed_is_refused() {
    let node = node().await;
    let key = key_where(|r| r.contains(&0) && r.contains(&1));
    // s2 announces incarnation 4, then s3 declares it failed. (A third party's
    // word goes no further than the incarnation a member announced itself.)
    let announced = ProbeRequest {
        from: "s2".to_string(),
        view: vec![entry("s2", 4, WireLiveness::Alive)],
        config_epoch: 0,
    };
    node.probe(announced).await.unwrap();
    let declared = ProbeRequest {
        from: "s3".to_string(),
        view: vec![entry("s2", 4, WireLiveness::Failed)],
        config_epoch: 0,
    };
    node.probe(declared).await.unwrap();
    let before = snapshot(&node);
    for incarnation in [3, 4] {
        assert_refused(
            node.push(push("s2", incarnation, vec![wire_record(&key, 1, 2)]))
                .await,
            Code::FailedPrecondition,
            &["counts incarnation", "over"],
        );
    }
    assert_eq!(snapshot(&node), before);
}

#[tokio::test]
async fn a_pushed_version_at_the_bound_stops_writes_with_an_error_instead_of_wrapping() {
    let node = node().await;
    let led = key_where(|r| r[0] == 0 && r.contains(&1));
    let last = wire_record(&led, Version::MAX_NUMBER, 2);
    node.push(push("s2", 1, vec![last])).await.unwrap();
    let before = snapshot(&node);
    let write = WriteRequest {
        key: led.clone(),
        value: "next".to_string(),
        forwarded: false,
    };
    let exhausted = VersionError::Exhausted {
        newest: Version::new(Version::MAX_NUMBER, 2),
    }
    .to_string();
    assert_refused(
        node.write(write).await,
        Code::FailedPrecondition,
        &[&exhausted, "nothing was written"],
    );
    let cas = UpdateIfValueIsRequest {
        key: led.clone(),
        old_value: "v".to_string(),
        new_value: "swapped".to_string(),
        forwarded: false,
    };
    assert_refused(
        node.update_if_value_is(cas).await,
        Code::FailedPrecondition,
        &[&exhausted],
    );
    assert_eq!(snapshot(&node), before);
}

/// A view with more entries than a cluster may have members (ids no node
/// knows): refused whole, however much of it would be skipped.
fn flood() -> Vec<MemberView> {
    (0..=1024)
        .map(|i| entry(&format!("x{i}"), 1, WireLiveness::Failed))
        .collect()
}

#[tokio::test]
async fn a_probe_is_believed_only_from_a_member_naming_members() {
    let node = node().await;
    let before = snapshot(&node);
    let me_failed = entry("s1", 10, WireLiveness::Failed);
    let forgeries = [
        ("", vec![me_failed.clone()], "not a storage node"),
        ("intruder", vec![me_failed.clone()], "not a storage node"),
        ("s1", vec![me_failed.clone()], "receiving node itself"),
        ("s2", flood(), "more than the 1024 members"),
        // A stranger beside a declaration, in a view that leaves out members this
        // node knows: no view of a node that learned of a member this one has not.
        (
            "s2",
            vec![me_failed.clone(), entry("s99", 1, WireLiveness::Failed)],
            "not a member",
        ),
        (
            "s2",
            vec![
                entry("s3", 1, WireLiveness::Failed),
                entry("s3", 1, WireLiveness::Alive),
            ],
            "more than one entry",
        ),
        (
            "s2",
            vec![entry("s3", u64::MAX, WireLiveness::Failed)],
            "above the highest",
        ),
        (
            "s2",
            vec![MemberView {
                id: "s3".to_string(),
                incarnation: 1,
                liveness: 9,
            }],
            "unknown liveness",
        ),
    ];
    for (from, view, says) in forgeries {
        let probe = ProbeRequest {
            from: from.to_string(),
            view,
            config_epoch: 0,
        };
        assert_refused(
            node.probe(probe).await,
            Code::InvalidArgument,
            &["node s1 refused a probe", says],
        );
    }
    assert_eq!(snapshot(&node), before, "not fenced, view unchanged");
    // A member's word about a member is believed.
    let probe = ProbeRequest {
        from: "s2".to_string(),
        view: vec![entry("s3", 1, WireLiveness::Failed)],
        config_epoch: 0,
    };
    node.probe(probe).await.unwrap();
    assert_eq!(node.failed_ids(), ["s3"]);
}

#[tokio::test]
async fn a_probe_request_needs_a_member_asking_about_another_member() {
    let node = node().await;
    let before = snapshot(&node);
    for (from, target, says) in [
        ("intruder", "s3", "not a storage node"),
        ("s2", "s9", "the target is not a storage node"),
        ("s2", "s2", "the sender itself"),
    ] {
        let request = ProbeForRequest {
            from: from.to_string(),
            target: target.to_string(),
            timeout_ms: 10,
        };
        assert_refused(
            node.probe_for(request).await,
            Code::InvalidArgument,
            &[says],
        );
    }
    assert_eq!(snapshot(&node), before);
}

#[tokio::test]
async fn a_malformed_key_pull_is_refused_before_its_view_is_adopted() {
    let node = node().await;
    let before = snapshot(&node);
    let failed_s3 = entry("s3", 1, WireLiveness::Failed);
    for (from, key, view, says) in [
        (
            "intruder",
            "k",
            vec![failed_s3.clone()],
            "not a storage node",
        ),
        ("s2", "", vec![failed_s3.clone()], "key"),
        ("s2", "k", flood(), "more than the 1024 members"),
    ] {
        let request = FetchKeyRequest {
            from: from.to_string(),
            key: key.to_string(),
            view,
        };
        assert_refused(
            node.fetch_key(request).await,
            Code::InvalidArgument,
            &["node s1 refused a key pull", says],
        );
    }
    assert_eq!(snapshot(&node), before);
}

#[tokio::test]
async fn a_malformed_handback_is_refused_before_its_view_is_adopted() {
    let node = node().await;
    let before = snapshot(&node);
    let ring = ring();
    let joining = vec![entry("s2", 50, WireLiveness::Joining)];
    let digest = |range| RangeDigest { range, digest: 1 };
    let cases = [
        (
            "intruder",
            joining.clone(),
            ring.fingerprint(),
            vec![digest(0)],
            Code::InvalidArgument,
        ),
        (
            "s2",
            vec![
                entry("s2", 50, WireLiveness::Joining),
                entry("s2", 1, WireLiveness::Alive),
            ],
            ring.fingerprint(),
            vec![digest(0)],
            Code::InvalidArgument,
        ),
        (
            "s2",
            joining.clone(),
            ring.fingerprint() ^ 1,
            vec![digest(0)],
            Code::FailedPrecondition,
        ),
        (
            "s2",
            joining.clone(),
            ring.fingerprint(),
            vec![digest(ring.range_count() as u32)],
            Code::InvalidArgument,
        ),
        (
            "s2",
            joining.clone(),
            ring.fingerprint(),
            vec![digest(1), digest(1)],
            Code::InvalidArgument,
        ),
    ];
    for (from, view, ring_fingerprint, ranges, code) in cases {
        let request = HandbackRequest {
            from: from.to_string(),
            view,
            ring_fingerprint,
            ranges,
        };
        assert_refused(node.handback(request).await, code, &["handback"]);
    }
    assert_eq!(snapshot(&node), before, "s2 is not joining in s1's view");
}

#[tokio::test]
async fn a_digest_exchange_names_only_ranges_both_replicate() {
    let node = node().await;
    let ring = ring();
    let shared: Vec<u32> = (0..ring.range_count() as u32)
        .filter(|&r| {
            let replicas = ring.range_replicas(r);
            replicas.contains(&0) && replicas.contains(&1)
        })
        .collect();
    let not_shared = (0..ring.range_count() as u32)
        .find(|r| !shared.contains(r))
        .expect("a range s1 and s2 do not share");
    let digest = |range| RangeDigest { range, digest: 1 };
    let before = snapshot(&node);
    for (from, ranges, says) in [
        ("nobody", vec![digest(shared[0])], "not a storage node"),
        (
            "s2",
            vec![digest(not_shared)],
            "not one both nodes replicate",
        ),
        (
            "s2",
            vec![digest(ring.range_count() as u32)],
            "does not exist",
        ),
        (
            "s2",
            vec![digest(shared[0]), digest(shared[0])],
            "more than once",
        ),
    ] {
        let request = DigestRequest {
            from: from.to_string(),
            ring_fingerprint: ring.fingerprint(),
            ranges,
            handoff: false,
        };
        assert_refused(
            node.sync_digests(request).await,
            Code::InvalidArgument,
            &["digest exchange", says],
        );
    }
    assert_eq!(snapshot(&node), before);
    let fine = DigestRequest {
        from: "s2".to_string(),
        ring_fingerprint: ring.fingerprint(),
        ranges: shared.iter().map(|&r| digest(r)).collect(),
        handoff: false,
    };
    assert!(node.sync_digests(fine).await.is_ok());
}

/// Property-based fuzzing of every handler's request validation: arbitrary messages
/// (senders real and not, any numbers, any liveness code, keys and values of any
/// shape) never panic a node, each gets an answer or a status within a deadline,
/// and the node still answers afterwards.
mod fuzz {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    #[derive(Debug, Clone)]
    enum Message {
        Push(PushRequest),
        Probe(ProbeRequest),
        ProbeFor(ProbeForRequest),
        FetchKey(FetchKeyRequest),
        Handback(HandbackRequest),
        Digests(DigestRequest),
        Read(ReadRequest),
        Write(WriteRequest),
        Cas(UpdateIfValueIsRequest),
    }

    fn id() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec!["s1", "s2", "s3", "s4", "s5", "", "s6"])
                .prop_map(String::from),
            ".{0,8}",
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,16}", "key-[0-9]{1,3}"]
    }

    fn record() -> impl Strategy<Value = WireRecord> {
        (
            text(),
            proptest::option::of((any::<u64>(), any::<u32>())),
            text(),
        )
            .prop_map(|(key, version, value)| WireRecord {
                key,
                version: version.map(|(number, replica)| WireVersion { number, replica }),
                value,
            })
    }

    fn view() -> impl Strategy<Value = Vec<MemberView>> {
        proptest::collection::vec(
            (id(), any::<u64>(), -1i32..4).prop_map(|(id, incarnation, liveness)| MemberView {
                id,
                incarnation,
                liveness,
            }),
            0..7,
        )
    }

    fn ranges() -> impl Strategy<Value = Vec<RangeDigest>> {
        proptest::collection::vec(
            (any::<u32>(), any::<u64>()).prop_map(|(range, digest)| RangeDigest { range, digest }),
            0..6,
        )
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                id(),
                proptest::collection::vec(record(), 0..4),
                any::<u64>(),
                any::<bool>()
            )
                .prop_map(|(from, records, incarnation, handoff)| Message::Push(
                    PushRequest {
                        from,
                        records,
                        incarnation,
                        handoff
                    }
                )),
            (id(), view()).prop_map(|(from, view)| Message::Probe(ProbeRequest {
                from,
                view,
                config_epoch: 0,
            })),
            (id(), id(), 0u32..50).prop_map(|(from, target, timeout_ms)| Message::ProbeFor(
                ProbeForRequest {
                    from,
                    target,
                    timeout_ms
                }
            )),
            (id(), text(), view()).prop_map(|(from, key, view)| Message::FetchKey(
                FetchKeyRequest { from, key, view }
            )),
            (id(), view(), any::<u64>(), ranges()).prop_map(
                |(from, view, ring_fingerprint, ranges)| Message::Handback(HandbackRequest {
                    from,
                    view,
                    ring_fingerprint,
                    ranges
                })
            ),
            (id(), any::<u64>(), ranges(), any::<bool>()).prop_map(
                |(from, ring_fingerprint, ranges, handoff)| {
                    Message::Digests(DigestRequest {
                        from,
                        ring_fingerprint,
                        ranges,
                        handoff,
                    })
                }
            ),
            (
                text(),
                proptest::option::of((any::<u64>(), any::<u32>())),
                any::<bool>()
            )
                .prop_map(|(key, version, forwarded)| Message::Read(ReadRequest {
                    key,
                    version: version.map(|(number, replica)| WireVersion { number, replica }),
                    forwarded,
                })),
            (text(), text(), any::<bool>()).prop_map(|(key, value, forwarded)| Message::Write(
                WriteRequest {
                    key,
                    value,
                    forwarded
                }
            )),
            (text(), text(), text(), any::<bool>()).prop_map(
                |(key, old_value, new_value, forwarded)| Message::Cas(UpdateIfValueIsRequest {
                    key,
                    old_value,
                    new_value,
                    forwarded,
                })
            ),
        ]
    }

    /// Hands `message` to its handler; only whether it returns matters here.
    async fn handle(node: &Node, message: Message) {
        let _ = match message {
            Message::Push(m) => node.push(m).await.map(drop),
            Message::Probe(m) => node.probe(m).await.map(drop),
            Message::ProbeFor(m) => node.probe_for(m).await.map(drop),
            Message::FetchKey(m) => node.fetch_key(m).await.map(drop),
            Message::Handback(m) => node.handback(m).await.map(drop),
            Message::Digests(m) => node.sync_digests(m).await.map(drop),
            Message::Read(m) => node.read(m).await.map(drop),
            Message::Write(m) => node.write(m).await.map(drop),
            Message::Cas(m) => node.update_if_value_is(m).await.map(drop),
        };
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn arbitrary_messages_never_panic_or_hang_a_node() {
        let node = node().await;
        let runtime = tokio::runtime::Handle::current();
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&message(), |message| {
                let shown = format!("{message:?}");
                let answered = tokio::task::block_in_place(|| {
                    runtime.block_on(tokio::time::timeout(
                        Duration::from_secs(10),
                        handle(&node, message),
                    ))
                });
                prop_assert!(answered.is_ok(), "no answer within 10 s to {shown}");
                Ok(())
            })
            .unwrap();
        // The node still answers (a fenced node answers with a status).
        let after = tokio::time::timeout(
            Duration::from_secs(10),
            node.read(ReadRequest {
                key: "after".into(),
                ..ReadRequest::default()
            }),
        )
        .await;
        assert!(after.is_ok(), "the node stopped answering");
    }
}
