//! One client's RESP connection: read commands, run them, write the replies in
//! order.
//!
//! A pipeline is run in segments: consecutive commands on different keys run
//! concurrently, and a command touching a key an earlier command of the segment
//! writes (or writing a key it reads) starts a new segment, as does a command that
//! changes the connection (`AUTH`, `HELLO`). So each key's commands take effect in
//! the order the client sent them, and a connection sees its own writes, while a
//! pipeline of reads or writes of many keys costs one round of the cluster rather
//! than one per command.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use dida_proto::convert::version_from_wire;
use dida_proto::reserved::RESERVED_KEY_PREFIX;
use dida_proto::storage::{ReadRequest, UpdateIfValueIsRequest, WriteRequest};
use futures::future::{self, BoxFuture};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tonic::Status;

use super::command::{self, Access, ClientCommand, Command, Credentials};
use super::reply::{Protocol, Reply};
use super::request::{self, MAX_COMMAND_BYTES};
use super::Shared;
use crate::node_core::Node;

/// The most commands read off a connection before their replies are written: a
/// deeper pipeline is served in rounds of this many.
const MAX_BATCH: usize = 1024;

/// How much is read off the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What a connection knows about its client.
struct Session {
    id: u64,
    protocol: Protocol,
    authenticated: bool,
    name: Option<String>,
    /// Set by `QUIT`: close once the replies are written.
    closing: bool,
}

/// Serves one connection until the client closes it, sends something that is not
/// RESP, or the node stops.
pub(super) async fn serve<S>(stream: S, shared: Arc<Shared>, mut stop: watch::Receiver<()>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut session = Session {
        id: shared.next_client_id.fetch_add(1, Ordering::Relaxed),
        protocol: Protocol::Resp2,
        authenticated: shared.token.is_none(),
        name: None,
        closing: false,
    };
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::new();
    loop {
        let mut batch = Vec::new();
        let mut broken = None;
        while batch.len() < MAX_BATCH {
            match request::parse(&input) {
                Ok(None) => break,
                Ok(Some(parsed)) => {
                    let arguments: Vec<&[u8]> = parsed
                        .arguments
                        .iter()
                        .map(|range| &input[range.clone()])
                        .collect();
                    if !arguments.is_empty() {
                        batch.push(command::parse(&arguments));
                    }
                    input.advance(parsed.consumed);
                }
                Err(error) => {
                    broken = Some(Reply::error("ERR", error));
                    break;
                }
            }
        }
        // A full batch stopped before the input ran out: the rest is already here.
        let more_waiting = batch.len() == MAX_BATCH;
        for reply in run_batch(&shared, &mut session, batch).await {
            reply.encode(session.protocol, &mut output);
        }
        if let Some(reply) = &broken {
            reply.encode(session.protocol, &mut output);
        }
        if !output.is_empty() {
            if writer.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        if broken.is_some() || session.closing {
            let _ = writer.shutdown().await;
            linger(&mut reader).await;
            return;
        }
        if more_waiting {
            continue;
        }
        debug_assert!(input.len() <= MAX_COMMAND_BYTES + READ_CHUNK);
        input.reserve(READ_CHUNK);
        tokio::select! {
            read = reader.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = stop.changed() => return,
        }
    }
}

/// Reads and drops what the client still sends, for a moment, before the
/// connection closes: closing with unread input would reset the connection, and
/// the client would lose the error reply that says why it was closed.
async fn linger(reader: &mut (impl AsyncRead + Unpin)) {
    let drain = async {
        let mut sink = [0u8; READ_CHUNK];
        let mut left = MAX_COMMAND_BYTES;
        while left > 0 {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// Runs a batch of parsed commands (or their parse errors) and answers each, in
/// order, in segments (see the module documentation).
async fn run_batch(
    shared: &Arc<Shared>,
    session: &mut Session,
    batch: Vec<Result<Command, Reply>>,
) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(batch.len());
    let mut segment: FuturesOrdered<BoxFuture<'static, Reply>> = FuturesOrdered::new();
    let mut read: HashSet<String> = HashSet::new();
    let mut written: HashSet<String> = HashSet::new();
    for parsed in batch {
        let command = match parsed {
            Err(reply) => {
                segment.push_back(Box::pin(future::ready(reply)));
                continue;
            }
            Ok(command) => command,
        };
        let access = command.access();
        let conflicts = match access {
            Access::Connection => true,
            Access::Read(key) => written.contains(key),
            Access::Reads(keys) => keys.iter().any(|key| written.contains(key)),
            Access::Write(key) => written.contains(key) || read.contains(key),
        };
        if conflicts {
            replies.extend(segment.by_ref().collect::<Vec<_>>().await);
            read.clear();
            written.clear();
        }
        match access {
            Access::Connection => replies.push(connection_command(shared, session, command)),
            _ if !session.authenticated => segment.push_back(Box::pin(future::ready(
                Reply::error("NOAUTH", "Authentication required."),
            ))),
            Access::Read(key) => {
                read.insert(key.to_string());
                segment.push_back(Box::pin(storage_command(shared.node.clone(), command)));
            }
            Access::Reads(keys) => {
                read.extend(keys.iter().cloned());
                segment.push_back(Box::pin(storage_command(shared.node.clone(), command)));
            }
            Access::Write(key) => {
                written.insert(key.to_string());
                segment.push_back(Box::pin(storage_command(shared.node.clone(), command)));
            }
        }
    }
    replies.extend(segment.collect::<Vec<_>>().await);
    replies
}

/// Answers a command that reads or changes only the connection.
fn connection_command(shared: &Shared, session: &mut Session, command: Command) -> Reply {
    let open = matches!(
        command,
        Command::Auth(_) | Command::Hello { .. } | Command::Quit
    );
    if !session.authenticated && !open {
        return Reply::error("NOAUTH", "Authentication required.");
    }
    match command {
        Command::Ping(None) => Reply::Status("PONG"),
        Command::Ping(Some(message)) | Command::Echo(message) => Reply::Bulk(message),
        Command::Auth(credentials) => match authenticate(shared, &credentials) {
            Ok(()) => {
                session.authenticated = true;
                Reply::Status("OK")
            }
            Err(reply) => reply,
        },
        Command::Hello {
            protocol,
            auth,
            name,
        } => {
            let protocol = match protocol {
                None => session.protocol,
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Reply::error("NOPROTO", "unsupported protocol version"),
            };
            if let Some(credentials) = &auth {
                if let Err(reply) = authenticate(shared, credentials) {
                    return reply;
                }
                session.authenticated = true;
            }
            if !session.authenticated {
                return Reply::error(
                    "NOAUTH",
                    "HELLO must be called with the client already authenticated, otherwise \
                     the HELLO <proto> AUTH <user> <pass> option can be used to authenticate \
                     the client and select the RESP protocol version at the same time",
                );
            }
            session.protocol = protocol;
            if name.is_some() {
                session.name = name;
            }
            Reply::Map(vec![
                (Reply::text("server"), Reply::text("dida")),
                (
                    Reply::text("version"),
                    Reply::text(env!("CARGO_PKG_VERSION")),
                ),
                (
                    Reply::text("proto"),
                    Reply::Integer(match protocol {
                        Protocol::Resp2 => 2,
                        Protocol::Resp3 => 3,
                    }),
                ),
                (Reply::text("id"), Reply::Integer(session.id as i64)),
                (Reply::text("mode"), Reply::text("standalone")),
                (Reply::text("role"), Reply::text("master")),
                (Reply::text("modules"), Reply::Array(Vec::new())),
            ])
        }
        Command::Select(0) => Reply::Status("OK"),
        Command::Select(_) => Reply::error("ERR", "DB index is out of range"),
        Command::Quit => {
            session.closing = true;
            Reply::Status("OK")
        }
        Command::Info => Reply::text(shared.info()),
        Command::Table(query) => command::table(&query),
        Command::ConfigGet(names) => {
            // No snapshots; a data directory is dida's append-only log.
            let durable = shared.node.peering.config().data_dir.is_some();
            let value = |name: &str| match name {
                "save" => Some(""),
                "appendonly" => Some(if durable { "yes" } else { "no" }),
                _ => None,
            };
            Reply::Map(
                names
                    .iter()
                    .filter_map(|name| Some((Reply::text(name), Reply::text(value(name)?))))
                    .collect(),
            )
        }
        Command::Client(client) => match client {
            ClientCommand::SetName(name) => {
                session.name = Some(name);
                Reply::Status("OK")
            }
            ClientCommand::GetName => session.name.clone().map_or(Reply::Null, Reply::text),
            ClientCommand::Id => Reply::Integer(session.id as i64),
            ClientCommand::SetInfo => Reply::Status("OK"),
            ClientCommand::Info => Reply::text(format!(
                "id={} name={} resp={}\n",
                session.id,
                session.name.as_deref().unwrap_or(""),
                match session.protocol {
                    Protocol::Resp2 => 2,
                    Protocol::Resp3 => 3,
                }
            )),
        },
        Command::Get(_)
        | Command::Set { .. }
        | Command::MGet(_)
        | Command::Exists(_)
        | Command::Cas { .. }
        | Command::GetVersioned { .. } => {
            unreachable!("storage commands are run by storage_command")
        }
    }
}

/// Checks `AUTH` credentials against the cluster token.
fn authenticate(shared: &Shared, credentials: &Credentials) -> Result<(), Reply> {
    let Some(token) = &shared.token else {
        return Err(Reply::error(
            "ERR",
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    };
    let user_ok = credentials
        .user
        .as_deref()
        .is_none_or(|user| user == "default");
    if user_ok && dida_proto::security::tokens_match(&credentials.password, token.as_bytes()) {
        Ok(())
    } else {
        Err(Reply::error(
            "WRONGPASS",
            "invalid username-password pair or user is disabled.",
        ))
    }
}

/// Runs a command that reads or writes keys, through the node exactly as a gRPC
/// call would go (served here, or forwarded to the key's replicas or primary).
async fn storage_command(node: Arc<Node>, command: Command) -> Reply {
    let answered = match command {
        Command::Get(key) => read(&node, key, None)
            .await
            .map(|record| record.map_or(Reply::Null, |(value, _)| Reply::text(value))),
        Command::GetVersioned { key, version } => read(&node, key, version).await.map(|record| {
            record.map_or(Reply::Null, |(value, version)| {
                Reply::Array(vec![Reply::text(value), Reply::text(version.to_string())])
            })
        }),
        Command::MGet(keys) => {
            let reads = keys.into_iter().map(|key| read(&node, key, None));
            future::try_join_all(reads).await.map(|records| {
                Reply::Array(
                    records
                        .into_iter()
                        .map(|record| record.map_or(Reply::Null, |(value, _)| Reply::text(value)))
                        .collect(),
                )
            })
        }
        Command::Exists(keys) => {
            let reads = keys.into_iter().map(|key| read(&node, key, None));
            future::try_join_all(reads)
                .await
                .map(|records| Reply::Integer(records.iter().flatten().count() as i64))
        }
        Command::Set {
            key,
            value,
            versioned,
        } => match refuse_reserved(&key) {
            Some(refusal) => return refusal,
            None => node
                .write(WriteRequest {
                    key,
                    value,
                    forwarded: false,
                })
                .await
                .map(|reply| match (versioned, reply.version) {
                    (true, Some(version)) => Reply::text(version_from_wire(version).to_string()),
                    _ => Reply::Status("OK"),
                }),
        },
        Command::Cas {
            key,
            expected,
            value,
        } => match refuse_reserved(&key) {
            Some(refusal) => return refusal,
            None => node
                .update_if_value_is(UpdateIfValueIsRequest {
                    key,
                    old_value: expected,
                    new_value: value,
                    forwarded: false,
                })
                .await
                .map(|reply| {
                    reply.version.map_or(Reply::Null, |version| {
                        Reply::text(version_from_wire(version).to_string())
                    })
                }),
        },
        _ => unreachable!("connection commands are answered by connection_command"),
    };
    answered.unwrap_or_else(|status| status_reply(&status))
}

/// Reads `key` (newest, or exactly `version`): its value and version, if any.
async fn read(
    node: &Node,
    key: String,
    version: Option<dida_core::Version>,
) -> Result<Option<(String, dida_core::Version)>, Status> {
    let reply = node
        .read(ReadRequest {
            key,
            version: version.map(dida_proto::convert::version_to_wire),
            forwarded: false,
        })
        .await?;
    Ok(reply.record.map(|record| {
        let version = record.version.map(version_from_wire).unwrap_or_default();
        (record.value, version)
    }))
}

/// Writes of dida's own keys are refused over RESP: only the scheduler changes
/// them, and it speaks gRPC (`dida_proto::reserved`).
fn refuse_reserved(key: &str) -> Option<Reply> {
    key.starts_with(RESERVED_KEY_PREFIX).then(|| {
        Reply::error(
            "NOPERM",
            format!(
                "key {key:?} is reserved: keys starting with {RESERVED_KEY_PREFIX:?} hold the \
                 deployed operators and registered applications, and only the scheduler \
                 changes them"
            ),
        )
    })
}

/// The error reply for a failed call: its gRPC code names it, so that a client can
/// tell `ABORTED` (nothing was applied: retry) from `UNAVAILABLE` or
/// `DEADLINE_EXCEEDED` (the outcome is unknown), as with the gRPC API
/// (docs/storage-api.md).
pub(super) fn status_reply(status: &Status) -> Reply {
    let code = match status.code() {
        tonic::Code::InvalidArgument => "ERR",
        tonic::Code::PermissionDenied => "NOPERM",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        _ => "ERR",
    };
    Reply::error(code, status.message())
}
