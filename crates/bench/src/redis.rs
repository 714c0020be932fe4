//! Redis beside dida in `dida bench storage` (SPEC §8, "Performance").
//!
//! The no-op RPC baseline shares dida's whole request path (tonic, HTTP/2, the
//! storage server's runtime), so a defect in that path slows the baseline as much as
//! the reads and cannot show in "vs ping". Redis is an outside yardstick for the same
//! job: a key-value GET and SET on loopback, measured under the same closed loop
//! (same concurrency, key count, value size, duration and warm-up), through one
//! multiplexed connection shared by all tasks, as dida's client shares one HTTP/2
//! connection.
//!
//! This module owns both halves of that baseline:
//! - the server: by default the benchmark starts `redis-server` from PATH on a free
//!   loopback port ([`RedisServer`], killed when dropped) or, with `--redis-url`,
//!   measures a running instance. A missing or failing `redis-server` only skips the
//!   Redis rows: the benchmark never fails for want of Redis;
//! - the workloads: `redis-get` (GET of one of the populated keys) and `redis-set`.

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::closed_loop::{Measurement, Operation};
use crate::storage::Timing;

/// How to install `redis-server` on Debian and Ubuntu; printed when it is missing.
pub(crate) const INSTALL_HINT: &str =
    "apt-get install -y redis-server (Debian/Ubuntu), or scripts/ensure-redis.sh";

/// How long a `redis-server` started by the benchmark may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Deadline of one connection attempt and PING while waiting for a started server.
const PROBE_DEADLINE: Duration = Duration::from_secs(1);

/// Pause between two PING attempts while waiting for a started server.
const PROBE_PAUSE: Duration = Duration::from_millis(20);

/// How long stopping a started server (kill, then reap) may take.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// Keys per MSET while populating and per DEL while cleaning up: large enough to
/// make preparation quick, small enough that no single command is huge.
const BATCH: usize = 1000;

/// Where the Redis baseline comes from, as the flags choose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisChoice {
    /// `--no-redis`: measure no Redis.
    Skip,
    /// The default: start `redis-server` from PATH; without it, skip the Redis rows.
    Start,
    /// `--redis-url`: measure this running instance. The user asked for it, so
    /// failing to reach it is an error rather than a skipped row.
    Url(String),
}

/// Checks a `--redis-url` when the flags are parsed, so a typo fails at once rather
/// than after the cluster has started.
pub(crate) fn parse_redis_url(text: &str) -> Result<String, String> {
    redis::Client::open(text)
        .map(|_| text.to_string())
        .map_err(|error| format!("{text:?} is not a Redis URL: {error}"))
}

/// The Redis workloads, each the counterpart of a dida workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisWorkload {
    /// GET of one of the populated keys: the counterpart of dida's `read`.
    Get,
    /// SET of one of the keys: the counterpart of dida's `write`.
    Set,
}

impl RedisWorkload {
    /// The name shown in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RedisWorkload::Get => "redis-get",
            RedisWorkload::Set => "redis-set",
        }
    }
}

/// The outcome of preparing the Redis baseline: ready to measure, or skipped with
/// the reason the report prints.
pub(crate) enum RedisBaseline {
    /// Connected and populated (boxed: it is far larger than the other variant).
    Ready(Box<Redis>),
    /// Not measured in this run, and why (including how to install Redis when
    /// that is the reason).
    Skipped(String),
}

/// Prepares the Redis baseline the flags ask for: starts or reaches the server,
/// connects, and populates the GET keys with `keys` values like dida's.
///
/// Fails only for `--redis-url`; a `redis-server` that is missing or fails to start
/// skips the Redis rows instead.
pub(crate) async fn prepare(
    choice: &RedisChoice,
    keys: usize,
    value: &Arc<str>,
    deadline: Duration,
) -> anyhow::Result<RedisBaseline> {
    match choice {
        RedisChoice::Skip => Ok(RedisBaseline::Skipped(
            "not measured (--no-redis)".to_string(),
        )),
        RedisChoice::Url(url) => {
            let redis = Redis::open(url, None, keys, value, deadline)
                .await
                .context("cannot measure the Redis given by --redis-url")?;
            Ok(RedisBaseline::Ready(Box::new(redis)))
        }
        RedisChoice::Start => match start_own(keys, value, deadline).await {
            Ok(Some(redis)) => Ok(RedisBaseline::Ready(Box::new(redis))),
            Ok(None) => Ok(RedisBaseline::Skipped(format!(
                "not measured: redis-server is not on PATH; install it with {INSTALL_HINT}, \
                 or give --redis-url"
            ))),
            Err(error) => {
                tracing::warn!("skipping the Redis baseline: {error:#}");
                Ok(RedisBaseline::Skipped(format!("not measured: {error:#}")))
            }
        },
    }
}

/// Starts `redis-server` and opens the baseline on it; `None` when it is not on PATH.
async fn start_own(
    keys: usize,
    value: &Arc<str>,
    deadline: Duration,
) -> anyhow::Result<Option<Redis>> {
    let Some(server) = RedisServer::start(START_LIMIT).await? else {
        return Ok(None);
    };
    let url = server.url();
    Redis::open(&url, Some(server), keys, value, deadline)
        .await
        .map(Some)
}

/// A connected, populated Redis and everything its workloads share.
pub(crate) struct Redis {
    /// The one connection all tasks share (each holds a clone of the handle).
    connection: MultiplexedConnection,
    /// Keys of the GET workload, populated with `value`.
    get_keys: Arc<[String]>,
    /// Keys of the SET workload.
    set_keys: Arc<[String]>,
    /// The value written by population and by every SET.
    value: Arc<str>,
    /// Deadline of each command.
    deadline: Duration,
    /// What is measured, for the report's set-up.
    description: String,
    /// The server this run started, or `None` for `--redis-url`. Declared after the
    /// connection so that, when dropped on an error, the connection closes first.
    server: Option<RedisServer>,
}

impl Redis {
    /// Connects to `url` and populates the GET keys. `server`, if given, is the
    /// process behind `url`; it is killed if opening fails.
    async fn open(
        url: &str,
        server: Option<RedisServer>,
        keys: usize,
        value: &Arc<str>,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).with_context(|| format!("invalid Redis URL {url}"))?;
        let mut connection = connect(&client, deadline).await?;
        let info: String = within(
            deadline,
            redis::cmd("INFO")
                .arg("server")
                .query_async(&mut connection),
        )
        .await
        .context("INFO server failed")?;
        let version = version_from_info(&info).unwrap_or("of unknown version");
        let address = client.get_connection_info().addr();
        let origin = match &server {
            Some(_) => format!("redis-server started by this run on {address}"),
            None => format!("at {address}, given by --redis-url"),
        };
        let redis = Self {
            connection,
            get_keys: key_names("dida-bench:get:", keys).into(),
            set_keys: key_names("dida-bench:set:", keys).into(),
            value: Arc::clone(value),
            deadline,
            description: format!(
                "Redis {version} {origin}; one multiplexed connection shared by all tasks"
            ),
            server,
        };
        redis
            .populate()
            .await
            .context("cannot populate the keys of the redis-get workload")?;
        Ok(redis)
    }

    /// What is measured, for the report's set-up.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// Writes the value to every GET key, so no GET measures a miss.
    async fn populate(&self) -> anyhow::Result<()> {
        let mut connection = self.connection.clone();
        for chunk in self.get_keys.chunks(BATCH) {
            let mut mset = redis::cmd("MSET");
            for key in chunk {
                mset.arg(key).arg(self.value.as_bytes());
            }
            within(self.deadline, mset.query_async::<()>(&mut connection))
                .await
                .with_context(|| format!("MSET of {} keys failed", chunk.len()))?;
        }
        Ok(())
    }

    /// Measures one Redis workload at one concurrency, under the same timing as
    /// dida's workloads.
    pub(crate) async fn measure(
        &self,
        workload: RedisWorkload,
        concurrency: usize,
        timing: Timing,
    ) -> anyhow::Result<Measurement> {
        let keys = match workload {
            RedisWorkload::Get => &self.get_keys,
            RedisWorkload::Set => &self.set_keys,
        };
        let ops = (0..concurrency)
            .map(|task| RedisOp {
                workload,
                connection: self.connection.clone(),
                keys: Arc::clone(keys),
                value: Arc::clone(&self.value),
                deadline: self.deadline,
                next: task * keys.len() / concurrency,
            })
            .collect();
        timing.measure(ops).await
    }

    /// Ends the baseline. A server this run started is stopped; on a server given
    /// by `--redis-url`, the keys the benchmark wrote are deleted, since that
    /// instance outlives the run.
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        let Self {
            mut connection,
            get_keys,
            set_keys,
            deadline,
            server,
            ..
        } = self;
        if let Some(server) = server {
            drop(connection);
            return server.stop().await;
        }
        for chunk in get_keys.chunks(BATCH).chain(set_keys.chunks(BATCH)) {
            within(
                deadline,
                redis::cmd("DEL")
                    .arg(chunk)
                    .query_async::<()>(&mut connection),
            )
            .await
            .with_context(|| format!("DEL of {} benchmark keys failed", chunk.len()))?;
        }
        Ok(())
    }
}

/// `count` key names `{prefix}0`, `{prefix}1`, …
fn key_names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

/// The server version from the text of `INFO server`, for the report.
fn version_from_info(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
}

/// Opens the multiplexed connection. The crate's own timeouts are switched off so
/// that one deadline applies to every call, through [`within`].
async fn connect(
    client: &redis::Client,
    deadline: Duration,
) -> anyhow::Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None);
    let address = client.get_connection_info().addr();
    within(
        deadline,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .with_context(|| format!("cannot connect to Redis at {address}"))
}

/// Runs one Redis call with a deadline, so a Redis that stops answering fails the
/// request instead of stalling the benchmark.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("Redis did not answer within {deadline:?}"),
    }
}

/// One task of a Redis workload: GETs or SETs the keys in turn, starting at its own
/// offset so the tasks spread over the keys, like dida's read and write tasks.
struct RedisOp {
    workload: RedisWorkload,
    connection: MultiplexedConnection,
    keys: Arc<[String]>,
    value: Arc<str>,
    deadline: Duration,
    next: usize,
}

impl Operation for RedisOp {
    async fn call(&mut self) -> anyhow::Result<()> {
        let key = &self.keys[self.next % self.keys.len()];
        self.next = self.next.wrapping_add(1);
        match self.workload {
            RedisWorkload::Get => {
                let mut get = redis::cmd("GET");
                get.arg(key);
                let value: Option<Vec<u8>> =
                    within(self.deadline, get.query_async(&mut self.connection))
                        .await
                        .with_context(|| format!("GET {key} failed"))?;
                if value.is_none() {
                    bail!("{key} is missing in Redis");
                }
            }
            RedisWorkload::Set => {
                let mut set = redis::cmd("SET");
                set.arg(key).arg(self.value.as_bytes());
                within(self.deadline, set.query_async::<()>(&mut self.connection))
                    .await
                    .with_context(|| format!("SET {key} failed"))?;
            }
        }
        Ok(())
    }
}

/// A `redis-server` process this run started. Dropping it kills the process, so an
/// error anywhere in the benchmark cannot leave it running; [`RedisServer::stop`]
/// is the orderly end that also waits for it to exit.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` from PATH on a free loopback port, in memory only (no
    /// snapshots, no append-only file), and waits until it answers PING. `Ok(None)`
    /// when `redis-server` is not on PATH.
    pub(crate) async fn start(limit: Duration) -> anyhow::Result<Option<Self>> {
        let port = dida_local_cluster::free_ports(1)?
            .into_iter()
            .next()
            .context("no free loopback port for redis-server")?;
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).context("cannot start redis-server"),
        };
        let mut server = Self { child, port };
        server.wait_until_ready(limit).await?;
        server.drain_output();
        Ok(Some(server))
    }

    /// The port it listens on (127.0.0.1).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the server.
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Waits until the server answers PING, failing early (with its output) if it
    /// exits, e.g. because another process took the port in the meantime.
    async fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let url = self.url();
        let client = redis::Client::open(url.as_str())
            .with_context(|| format!("invalid Redis URL {url}"))?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot check on redis-server")?
            {
                let output = self.exit_output().await;
                bail!(
                    "redis-server on port {} exited ({status}) before answering PING: {output}",
                    self.port
                );
            }
            let probe = async {
                let mut connection = connect(&client, PROBE_DEADLINE).await?;
                within(
                    PROBE_DEADLINE,
                    redis::cmd("PING").query_async::<String>(&mut connection),
                )
                .await
            };
            match probe.await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!(
                        "redis-server on port {} did not answer PING within {limit:?}",
                        self.port
                    )))
                }
                Err(_) => tokio::time::sleep(PROBE_PAUSE).await,
            }
        }
    }

    /// What an exited server printed, to explain why it exited.
    async fn exit_output(&mut self) -> String {
        let mut output = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let read = stdout.read_to_string(&mut output);
            if tokio::time::timeout(PROBE_DEADLINE, read).await.is_err() {
                output.push_str("(reading its output timed out)");
            }
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            let read = stderr.read_to_string(&mut output);
            if tokio::time::timeout(PROBE_DEADLINE, read).await.is_err() {
                output.push_str("(reading its error output timed out)");
            }
        }
        let output = output.trim();
        if output.is_empty() {
            "it printed nothing".to_string()
        } else {
            output.to_string()
        }
    }

    /// Keeps reading what the server prints, so that a full pipe can never block it.
    fn drain_output(&mut self) {
        if let Some(mut stdout) = self.child.stdout.take() {
            tokio::spawn(async move {
                if let Err(error) = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await {
                    tracing::debug!("cannot read redis-server's output: {error}");
                }
            });
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            tokio::spawn(async move {
                if let Err(error) = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await {
                    tracing::debug!("cannot read redis-server's error output: {error}");
                }
            });
        }
    }

    /// Kills the server and waits for it to exit.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let port = self.port;
        tokio::time::timeout(STOP_LIMIT, self.child.kill())
            .await
            .with_context(|| {
                format!("redis-server on port {port} did not exit within {STOP_LIMIT:?}")
            })?
            .with_context(|| format!("cannot stop redis-server on port {port}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // After `stop`, or if it died by itself, there is nothing left to kill.
        if let Ok(None) = self.child.try_wait() {
            if let Err(error) = self.child.start_kill() {
                tracing::warn!("cannot kill redis-server on port {}: {error}", self.port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(version_from_info(info), Some("7.0.15"));
        assert_eq!(version_from_info("# Server\r\n"), None);
    }

    #[test]
    fn redis_urls_are_checked_when_parsed() {
        assert_eq!(
            parse_redis_url("redis://127.0.0.1:6379"),
            Ok("redis://127.0.0.1:6379".to_string())
        );
        assert!(parse_redis_url("http://example.invalid").is_err());
        assert!(parse_redis_url("not a url").is_err());
    }

    #[test]
    fn workload_names() {
        assert_eq!(RedisWorkload::Get.name(), "redis-get");
        assert_eq!(RedisWorkload::Set.name(), "redis-set");
    }

    #[test]
    fn skipping_needs_no_server() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let value: Arc<str> = "v".into();
        let baseline = runtime
            .block_on(prepare(
                &RedisChoice::Skip,
                10,
                &value,
                Duration::from_secs(1),
            ))
            .unwrap();
        assert!(matches!(baseline, RedisBaseline::Skipped(why) if why.contains("--no-redis")));
    }

    /// Starts a real redis-server, measures both workloads briefly and stops it;
    /// skipped (with a note) on a machine without redis-server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_started_server_is_measured_and_stopped() {
        let value: Arc<str> = "v".repeat(16).into();
        let deadline = Duration::from_secs(5);
        let baseline = match prepare(&RedisChoice::Start, 20, &value, deadline)
            .await
            .unwrap()
        {
            RedisBaseline::Ready(baseline) => baseline,
            RedisBaseline::Skipped(why) => {
                eprintln!("note: skipping the redis-server test: {why}");
                return;
            }
        };
        let description = baseline.description();
        assert!(description.contains("started by this run"), "{description}");
        let url = baseline.server.as_ref().map(RedisServer::url).unwrap();
        let timing = Timing {
            warmup: Duration::from_millis(20),
            duration: Duration::from_millis(100),
        };
        for workload in [RedisWorkload::Get, RedisWorkload::Set] {
            let measurement = baseline.measure(workload, 4, timing).await.unwrap();
            assert_eq!(measurement.errors, 0, "{:?}", measurement.first_error);
            assert!(measurement.completed > 0);
        }
        baseline.finish().await.unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        assert!(
            connect(&client, deadline).await.is_err(),
            "redis-server still answers"
        );
    }
}
