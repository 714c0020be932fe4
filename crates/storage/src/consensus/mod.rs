//! Agreement on the cluster's configuration: one single-decree Paxos instance per
//! epoch (`paxos`, its decisions as plain functions) and the acceptor's state, kept
//! in the data directory (`state`). `reconfig` runs the protocol over the
//! network; `peering` holds each node's state.

mod paxos;
mod state;

pub(crate) use paxos::{value_to_propose, Accepted, Ballot, Prepared};
pub(crate) use state::ClusterState;
