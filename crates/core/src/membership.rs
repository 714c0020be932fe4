//! Cluster membership: which storage nodes exist, where they listen, and the replica
//! number each one stamps on the versions it creates.
//!
//! Every node and client is given the same membership (the `--peers` flag), and every
//! derived fact — the ring, replica numbers — is computed from it deterministically, so
//! all of them agree without talking to each other.

use std::cmp::Ordering;
use std::fmt;

/// One storage node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id, for example `s1`.
    pub id: String,
    /// Where the node serves gRPC, for example `http://127.0.0.1:7001`.
    pub url: NodeUrl,
    /// The replica number stamped on the versions this node creates: its 1-based
    /// position in the membership sorted by id in natural order (`s2` before `s10`).
    pub replica: u32,
}

/// A node address of the form `http://HOST:PORT` or `https://HOST:PORT`.
///
/// The scheme only says how the address was written: a process with TLS on
/// connects with TLS whatever the scheme, and one without TLS refuses an `https`
/// URL (`dida_proto::security`). Writing `https` where TLS is on lets a
/// configuration say what it means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeUrl {
    /// Host name or IP address, as written.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the URL was written `https://`.
    pub https: bool,
}

impl NodeUrl {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is
    /// accepted).
    pub fn parse(text: &str) -> Result<Self, MembershipError> {
        let bad = |why: &str| MembershipError::BadUrl {
            url: text.to_string(),
            why: why.to_string(),
        };
        let (rest, https) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(bad("it must start with http:// or https://")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = parse_host_port(rest).map_err(|why| bad(&why))?;
        Ok(Self { host, port, https })
    }

    /// The address `HOST:PORT` of the URL.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Splits `HOST:PORT`, checking both parts: a port from 1 to 65535 and a host with
/// no `/` or `@` (an IPv6 address goes in brackets, `[::1]:7001`).
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or("it must name a port, as in 127.0.0.1:7001")?;
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err("the host is missing or malformed".to_string());
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok((host.to_string(), port)),
        _ => Err("the port must be a number from 1 to 65535".to_string()),
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Why a membership list or node address was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    /// The list names no node at all.
    #[error("the membership list is empty")]
    Empty,
    /// An entry is not of the form `ID=URL`.
    #[error("membership entry {entry:?} is not of the form ID=http://HOST:PORT")]
    BadEntry {
        /// The offending entry.
        entry: String,
    },
    /// A node id uses characters other than letters, digits, `-`, `_` and `.`.
    #[error("node id {id:?} is invalid: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadId {
        /// The offending id.
        id: String,
    },
    /// A URL could not be parsed.
    #[error("bad node URL {url:?}: {why}")]
    BadUrl {
        /// The offending URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The same id appears twice.
    #[error("node id {id:?} appears more than once")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// Two nodes claim the same address.
    #[error("nodes {first:?} and {second:?} share the address {url}")]
    DuplicateUrl {
        /// First node.
        first: String,
        /// Second node.
        second: String,
        /// The shared address.
        url: String,
    },
    /// A node id was looked up that is not a member.
    #[error("unknown storage node {id:?}; known nodes: {known}")]
    UnknownNode {
        /// The id asked for.
        id: String,
        /// Comma-separated known ids.
        known: String,
    },
}

/// Checks that a node id is made of 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_node_id(id: &str) -> Result<(), MembershipError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(MembershipError::BadId { id: id.to_string() })
    }
}

/// The set of storage nodes, sorted by id in natural order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    members: Vec<Member>,
}

impl Membership {
    /// Parses `ID=URL,ID=URL,…` (the `--peers` flag). Whitespace around entries is
    /// ignored.
    pub fn parse(spec: &str) -> Result<Self, MembershipError> {
        let mut nodes = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, url) = entry
                .split_once('=')
                .ok_or_else(|| MembershipError::BadEntry {
                    entry: entry.to_string(),
                })?;
            nodes.push((id.trim().to_string(), url.trim().to_string()));
        }
        Self::new(nodes)
    }

    /// Builds a membership from `(id, url)` pairs, validating both and numbering the
    /// replicas in natural id order: every node given the same list, in any order,
    /// derives the same membership.
    pub fn new(nodes: impl IntoIterator<Item = (String, String)>) -> Result<Self, MembershipError> {
        let mut members = Self::checked(nodes, true)?;
        members.sort_by(|a, b| natural_cmp(&a.id, &b.id));
        Ok(Self::numbered(members))
    }

    /// Builds a membership from `(id, url)` pairs kept in the order given, member
    /// `i` stamping replica number `i + 1`: the membership of a cluster
    /// configuration, whose order is fixed once and for all (the first membership's
    /// natural order, then each joined member at the end), so that no join
    /// renumbers a replica that stamped versions. URLs may repeat: a removed
    /// member stays listed, and a node joining later may take its address (the
    /// configuration's rules keep the URLs of current members distinct).
    pub fn in_order(
        nodes: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, MembershipError> {
        Ok(Self::numbered(Self::checked(nodes, false)?))
    }

    fn numbered(mut members: Vec<Member>) -> Self {
        for (position, member) in members.iter_mut().enumerate() {
            member.replica = position as u32 + 1;
        }
        Self { members }
    }

    /// The members of `nodes`, each id and URL valid, each id used once (each URL
    /// too if `unique_urls`), unnumbered.
    fn checked(
        nodes: impl IntoIterator<Item = (String, String)>,
        unique_urls: bool,
    ) -> Result<Vec<Member>, MembershipError> {
        let mut members = Vec::new();
        for (id, url) in nodes {
            check_node_id(&id)?;
            let url = NodeUrl::parse(&url)?;
            if members.iter().any(|m: &Member| m.id == id) {
                return Err(MembershipError::DuplicateId { id });
            }
            if let Some(other) = members.iter().find(|m| unique_urls && m.url == url) {
                return Err(MembershipError::DuplicateUrl {
                    first: other.id.clone(),
                    second: id,
                    url: url.to_string(),
                });
            }
            members.push(Member {
                id,
                url,
                replica: 0,
            });
        }
        if members.is_empty() {
            return Err(MembershipError::Empty);
        }
        Ok(members)
    }

    /// Every member, in natural id order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a membership has at least one node.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Position of `id` in [`Self::members`].
    pub fn index_of(&self, id: &str) -> Result<usize, MembershipError> {
        self.members
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| MembershipError::UnknownNode {
                id: id.to_string(),
                known: self.ids().collect::<Vec<_>>().join(","),
            })
    }

    /// The member called `id`.
    pub fn get(&self, id: &str) -> Result<&Member, MembershipError> {
        Ok(&self.members[self.index_of(id)?])
    }

    /// Member ids, in natural order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.id.as_str())
    }
}

/// Compares ids so that runs of digits compare as numbers: `s2 < s10`.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (na, nb) = (
                    a[..da].trim_start_matches('0'),
                    b[..db].trim_start_matches('0'),
                );
                let order = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    .then_with(|| da.cmp(&db));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_numbers_members_in_natural_order() {
        let m = Membership::parse(
            "s10=http://127.0.0.1:7010, s2=http://localhost:7002,s1=http://127.0.0.1:7001/",
        )
        .unwrap();
        let ids: Vec<_> = m.ids().collect();
        assert_eq!(ids, ["s1", "s2", "s10"]);
        assert_eq!(m.get("s10").unwrap().replica, 3);
        assert_eq!(
            m.get("s2").unwrap().url.to_string(),
            "http://localhost:7002"
        );
        assert_eq!(m.get("s1").unwrap().url.port, 7001);
    }

    #[test]
    fn rejects_malformed_membership_with_a_clear_reason() {
        let cases = [
            ("", "empty"),
            ("s1", "not of the form"),
            ("s1=127.0.0.1:7001", "must start with http://"),
            ("s1=http://127.0.0.1", "must name a port"),
            ("s1=http://127.0.0.1:0", "port must be a number"),
            ("s1=http://127.0.0.1:99999", "port must be a number"),
            ("s 1=http://127.0.0.1:7001", "node id"),
            ("s1=http://a:1,s1=http://b:1", "more than once"),
            ("s1=http://a:1,s2=http://a:1", "share the address"),
        ];
        for (spec, expected) in cases {
            let err = Membership::parse(spec).unwrap_err().to_string();
            assert!(err.contains(expected), "{spec:?}: {err}");
        }
        let m = Membership::parse("s1=http://a:1").unwrap();
        let err = m.get("s9").unwrap_err().to_string();
        assert!(err.contains("unknown storage node \"s9\"") && err.contains("s1"));
    }

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        let mut ids = vec!["s10", "s9", "a", "s1", "s01x", "s1x", "b2"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["a", "b2", "s1", "s1x", "s01x", "s9", "s10"]);
    }
}
