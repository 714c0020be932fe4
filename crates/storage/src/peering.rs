//! The narrow context every background protocol of a node works in: who the node
//! is, its view of which peers failed, how it reaches them, and its counters.
//!
//! Gossip, the detector, anti-entropy and takeover take a [`Peering`] (plus, for the
//! last two, the store and the outboxes) instead of the whole node, so each can be
//! run and tested on its own, over any [`PeerTransport`]. Time is tokio's clock,
//! which the simulator pauses and advances.

use std::sync::{Arc, Mutex, OnceLock};

use dida_core::ClusterConfig;
use dida_core::{Liveness, MemberState, MemberStates, Ring};
use dida_proto::convert::view_to_wire;
use dida_proto::storage::MemberView;
use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify};
use tonic::Status;
use tracing::{error, info, warn};

use crate::config::StorageConfig;
use crate::consensus::ClusterState;
use crate::error::{ConfigError, StorageError};
use crate::lifecycle::Lifecycle;
use crate::roster::Roster;
use crate::stats::{self, MembershipStats, ReplicationStats};
use crate::store::MultiVersionStore;
use crate::transport::PeerTransport;
use crate::validation::{self, Refusal};
use crate::view::{View, ViewCell};

/// One node's identity, view, transport and counters. Its fields are its own:
/// protocols change the view through [`Peering::learn`] and
/// [`Peering::declare_failed`], and the life cycle through [`Lifecycle`]'s
/// transitions.
#[derive(Debug)]
pub(crate) struct Peering {
    config: StorageConfig,
    /// Every member this node knows, by index: the configuration's membership,
    /// growing as nodes join.
    roster: Roster,
    /// This node's index in the membership (and so on the ring).
    me: usize,
    /// Which nodes have failed, and the ring of the live ones.
    view: ViewCell,
    /// Told at every change of the view (anti-entropy re-replicates at once).
    view_changed: Notify,
    /// This process's incarnation, fence and catch-up mark.
    lifecycle: Lifecycle,
    /// For every member, the highest incarnation it announced of itself in a
    /// message it sent this node: what others say of it is taken as of that
    /// incarnation at most ([`believed`]), so no one can push a member past what
    /// it ever announced (a failure "at incarnation 2^62" would exclude it for
    /// good).
    announced: Mutex<Vec<u64>>,
    transport: Arc<dyn PeerTransport>,
    stats: ReplicationStats,
    membership_stats: MembershipStats,
    /// The cluster's decided configuration and this node's acceptor (`reconfig`).
    cluster: ClusterState,
    /// Set once the cluster removed this node (`reconfig`): it stops serving.
    departed: watch::Sender<bool>,
    /// The store to re-bucket when members join, before their points enter any
    /// ring ([`Peering::grow`]); set once the store is open.
    store: OnceLock<Arc<MultiVersionStore>>,
    /// Serializes growths of the membership.
    growing: Mutex<()>,
}

impl Peering {
    /// The context of member `config.id`, reaching its peers through `transport`.
    pub fn new(
        config: StorageConfig,
        transport: Arc<dyn PeerTransport>,
    ) -> Result<Self, StorageError> {
        config.validate()?;
        let me = config
            .membership
            .index_of(&config.id)
            .map_err(ConfigError::from)?;
        let initial = config.admitted.clone().unwrap_or_else(|| {
            ClusterConfig::initial(config.cluster_id.clone(), &config.membership)
        });
        let cluster = ClusterState::open(initial, config.data_dir.as_deref())?;
        Ok(Self {
            me,
            roster: Roster::new(&config.membership),
            view: ViewCell::new(
                config.membership.ids().map(str::to_string).collect(),
                config.vnodes,
                config.replication_factor,
                me,
                MemberState {
                    incarnation: config.incarnation,
                    liveness: Liveness::Joining,
                },
            ),
            lifecycle: Lifecycle::new(config.incarnation),
            view_changed: Notify::new(),
            announced: Mutex::new(vec![0; config.membership.len()]),
            store: OnceLock::new(),
            growing: Mutex::new(()),
            transport,
            stats: ReplicationStats::default(),
            membership_stats: MembershipStats::default(),
            cluster,
            departed: watch::channel(false).0,
            config,
        })
    }

    /// The cluster's decided configuration and this node's acceptor.
    pub fn cluster(&self) -> &ClusterState {
        &self.cluster
    }

    /// Every member this node knows, by index.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Gives the store to re-bucket when members join ([`Peering::grow`]).
    pub fn attach_store(&self, store: Arc<MultiVersionStore>) {
        let _ = self.store.set(store);
    }

    /// Admits the members `config` lists past those this node knows (nodes that
    /// joined): re-buckets the store onto the new first ring before any ring
    /// holds their points, prepares connections to them, appends them to the
    /// roster, and adds them to the view as joining (out of every ring until they
    /// catch up and announce themselves alive). Returns whether any was added.
    pub fn grow(&self, config: &ClusterConfig) -> Result<bool, ConfigError> {
        let _growing = self.growing.lock().expect("growth lock poisoned");
        if config.members.len() <= self.roster.len() {
            return Ok(false);
        }
        let membership = config.membership()?;
        let ids: Vec<String> = membership.ids().map(str::to_string).collect();
        let first = Arc::new(Ring::new(
            &ids,
            self.config.vnodes,
            self.config.replication_factor,
        ));
        if let Some(store) = self.store.get() {
            store.rebucket(&first);
        }
        for index in self.roster.len()..membership.len() {
            let member = &membership.members()[index];
            self.transport
                .add_peer(index, &member.id, &member.url)
                .map_err(|reason| ConfigError::PeerAddress {
                    id: member.id.clone(),
                    reason,
                })?;
        }
        let added = self.roster.extend(&membership);
        {
            let mut announced = self.announced.lock().expect("announced lock poisoned");
            announced.resize(self.roster.len(), 0);
        }
        self.view.grow(ids, first);
        info!(
            node = self.id(),
            joined = ?added.map(|n| self.id_of(n)).collect::<Vec<_>>(),
            "admitted new members"
        );
        self.view_changed.notify_waiters();
        Ok(true)
    }

    /// `states` on the wire, each named by its member's id.
    pub fn states_to_wire(&self, states: &MemberStates) -> Vec<MemberView> {
        view_to_wire(self.roster.iter().map(|m| m.id.as_str()), states)
    }

    /// Marks this node removed from the cluster: whoever waits on
    /// [`Peering::departed`] (the serving process) stops it.
    pub fn depart(&self) {
        self.departed.send_replace(true);
    }

    /// Becomes true once the cluster removed this node.
    pub fn departed(&self) -> watch::Receiver<bool> {
        self.departed.subscribe()
    }

    /// The node's settings.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// This node's index in the membership (and on every ring).
    pub fn me(&self) -> usize {
        self.me
    }

    /// The node's view, and the rings that follow from it.
    pub fn view(&self) -> &ViewCell {
        &self.view
    }

    /// How the node reaches its peers.
    pub fn transport(&self) -> &dyn PeerTransport {
        self.transport.as_ref()
    }

    /// Replication counters (gossip, anti-entropy), for `Status` and `/metrics`.
    pub fn stats(&self) -> &ReplicationStats {
        &self.stats
    }

    /// Membership counters (suspicions, declarations, fences, catch-ups).
    pub fn membership_stats(&self) -> &MembershipStats {
        &self.membership_stats
    }

    /// This process's incarnation, fence and catch-up mark, with their transitions.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Resolves at the next change of the view (anti-entropy then re-replicates,
    /// rejoin looks at its own liveness again).
    pub fn view_change(&self) -> Notified<'_> {
        self.view_changed.notified()
    }

    /// Wakes whoever waits for a change of the view: the view changed outside
    /// [`Peering::learn`] (this node's own liveness, set by `rejoin`).
    pub fn announce_view_change(&self) {
        self.view_changed.notify_waiters();
    }

    /// Id of member `index`.
    pub fn id_of(&self, index: usize) -> &str {
        &self.roster.get(index).id
    }

    /// URL of member `index`, for error messages.
    pub fn url_of(&self, index: usize) -> String {
        self.roster.get(index).url.to_string()
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        self.id_of(self.me)
    }

    /// The ring of the live nodes, as this node currently sees it.
    pub fn ring(&self) -> Arc<Ring> {
        self.view.ring()
    }

    /// The replicas of `key` on `ring` other than this node, primary first: whom a
    /// primary replicates to, and whom a new primary catches up from.
    pub fn other_replicas(&self, ring: &Ring, key: &str) -> Vec<usize> {
        ring.replicas(key)
            .iter()
            .copied()
            .filter(|&n| n != self.me)
            .collect()
    }

    /// The peers `view` does not count failed or removed — alive, joining or
    /// leaving (a snapshot the
    /// caller also takes its ring or failed set from, so they agree).
    pub fn live_peers(&self, view: &View) -> Vec<usize> {
        (0..view.members.len())
            .filter(|&n| n != self.me && !view.is_failed(n) && view.is_member(n))
            .collect()
    }

    /// This process's current incarnation (it grows at every rejoin).
    pub fn incarnation(&self) -> u64 {
        self.lifecycle.incarnation()
    }

    /// This node's own liveness in its current view.
    pub fn liveness(&self) -> Liveness {
        self.view.current().members.get(self.me).liveness
    }

    /// Whether the other nodes declared this incarnation failed: it stops serving
    /// until it has started over as a new incarnation (`rejoin`).
    pub fn is_fenced(&self) -> bool {
        self.lifecycle.is_fenced()
    }

    /// Refuses service once fenced: a node declared failed behaves as if crashed.
    /// The refusal is `ABORTED`, the code that tells clients nothing was applied
    /// and they may retry — here at the key's new primary, once they have the view
    /// in which this node failed.
    pub fn check_serving(&self) -> Result<(), Status> {
        if self.is_fenced() {
            return Err(Status::aborted(format!(
                "storage node {} was declared failed by its peers and is starting over as a \
                 new incarnation; nothing was applied",
                self.id()
            )));
        }
        Ok(())
    }

    /// Ids of the nodes this node knows to have failed (in their current
    /// incarnation).
    pub fn failed_ids(&self) -> Vec<String> {
        let view = self.view.current();
        view.members
            .failed()
            .map(|n| self.id_of(n).to_string())
            .collect()
    }

    /// Ids of the nodes out of this node's ring (failed or joining).
    pub fn out_of_ring_ids(&self) -> Vec<String> {
        let view = self.view.current();
        view.out
            .iter()
            .map(|&n| self.id_of(n).to_string())
            .collect()
    }

    /// This node's view on the wire, for probes, pulls and handbacks.
    pub fn view_to_wire(&self) -> Vec<MemberView> {
        self.states_to_wire(&self.view.current().members)
    }

    /// Merges a view another node sent in a reply, checked whole first
    /// ([`validation::view`]): a view naming a non-member, a member twice, an
    /// unknown liveness or an incarnation past the bound changes nothing. (Handlers
    /// check the views of requests before anything else and [`Peering::learn`]
    /// them.)
    pub fn learn_wire(&self, source: usize, view: &[MemberView]) -> Result<(), Refusal> {
        let updates = validation::view(&self.roster, view)?;
        if !updates.is_empty() {
            self.learn(Some(source), updates);
        }
        Ok(())
    }

    /// Declares `nodes` failed in the incarnations `view` knows them by (a restart
    /// announced meanwhile supersedes the declaration).
    pub fn declare_failed(&self, view: &View, nodes: &[usize]) {
        let updates = nodes.iter().map(|&n| {
            let state = MemberState {
                incarnation: view.members.get(n).incarnation,
                liveness: Liveness::Failed,
            };
            (n, state)
        });
        self.learn(None, updates.collect());
    }

    /// Adopts the newer states in `updates`. If the view changed, re-replication
    /// starts at once; if the change supersedes this node's own incarnation
    /// (declared failed, or a later process with its id), the node fences itself
    /// and `rejoin` starts it over.
    ///
    /// `source` is the member whose message carried `updates` (`None` for this
    /// node's own detector): what it says of itself is its announcement, and what
    /// anyone says of a member is taken as of the incarnation that member
    /// announced at most ([`believed`]). A declaration therefore costs its target
    /// a rejoin (which keeps its data, `rejoin`), never more.
    pub fn learn(&self, source: Option<usize>, updates: Vec<(usize, MemberState)>) {
        let mine = self.incarnation();
        let updates: Vec<(usize, MemberState)> = {
            let mut announced = self.announced.lock().expect("announced lock poisoned");
            if let Some(source) = source {
                if let Some(&(_, state)) = updates.iter().find(|(node, _)| *node == source) {
                    if let Some(mark) = announced.get_mut(source) {
                        *mark = (*mark).max(state.incarnation);
                    }
                }
            }
            updates
                .into_iter()
                .filter_map(|(node, state)| {
                    let taken = believed(self.me, mine, &announced, node, state);
                    if taken.is_none() && state.incarnation > mine {
                        warn!(
                            node = self.id(),
                            incarnation = state.incarnation,
                            source = source.map(|s| self.id_of(s)),
                            "ignored a claim about an incarnation of this node above its own"
                        );
                    }
                    taken.map(|state| (node, state))
                })
                .collect()
        };
        let Some(view) = self.view.merge(updates) else {
            return;
        };
        let own = view.members.get(self.me);
        if self.lifecycle.is_declared(own) {
            if self.lifecycle.fence_if_declared(own) {
                stats::add(&self.membership_stats.fences, 1);
                error!(
                    node = self.id(),
                    incarnation = self.incarnation(),
                    "the other storage nodes declared this node failed: it stops serving and \
                     rejoins as a new incarnation, keeping its records"
                );
            }
        } else {
            let out: Vec<String> = view
                .members
                .iter()
                .enumerate()
                .filter(|(_, state)| !state.in_ring())
                .map(|(n, state)| {
                    format!("{}={}@{}", self.id_of(n), state.liveness, state.incarnation)
                })
                .collect();
            info!(node = self.id(), epoch = view.epoch, ?out, "view changed");
        }
        self.view_changed.notify_waiters();
    }
}

/// What a node (`me`, at incarnation `mine`) takes from a message's claim about
/// `node`, given the incarnations each member `announced` of itself; `None` to
/// ignore it.
///
/// - Of itself, a node believes only that its current incarnation failed (the
///   others declared it: it fences and rejoins). Its incarnation is its own to
///   choose: a claim about a higher one is a forgery or a stale twin, and believing
///   it would fence the node past any incarnation it may take.
/// - Of another member, a claim about an incarnation above the highest that
///   member announced (its own messages raise the mark before this is asked) is
///   taken as of that highest one: "failed at some later incarnation" means at
///   least that the one known here is over, and a third party cannot invent a
///   member's future (which no announcement of the member could supersede).
pub(crate) fn believed(
    me: usize,
    mine: u64,
    announced: &[u64],
    node: usize,
    state: MemberState,
) -> Option<MemberState> {
    if node == me {
        return (state.incarnation == mine && state.liveness == Liveness::Failed).then_some(state);
    }
    Some(MemberState {
        incarnation: state
            .incarnation
            .min(announced.get(node).copied().unwrap_or(0)),
        ..state
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(incarnation: u64, liveness: Liveness) -> MemberState {
        MemberState {
            incarnation,
            liveness,
        }
    }

    #[test]
    fn a_node_believes_of_itself_only_that_its_current_incarnation_failed() {
        let announced = [0, 7, 3];
        let failed = state(10, Liveness::Failed);
        assert_eq!(believed(0, 10, &announced, 0, failed), Some(failed));
        for claim in [
            state(11, Liveness::Failed),
            state(1 << 62, Liveness::Failed),
            state(11, Liveness::Alive),
            state(10, Liveness::Alive),
        ] {
            assert_eq!(believed(0, 10, &announced, 0, claim), None, "{claim:?}");
        }
    }

    #[test]
    fn claims_about_others_go_no_further_than_what_they_announced() {
        let announced = [0, 7, 3];
        let failed = state(7, Liveness::Failed);
        assert_eq!(believed(0, 10, &announced, 1, failed), Some(failed));
        let alive = state(5, Liveness::Alive);
        assert_eq!(believed(0, 10, &announced, 1, alive), Some(alive));
        assert_eq!(
            believed(0, 10, &announced, 2, state(1 << 62, Liveness::Failed)),
            Some(state(3, Liveness::Failed))
        );
    }
}
