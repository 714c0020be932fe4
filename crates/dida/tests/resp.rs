//! The RESP endpoint (`--resp-listen`) as Redis users drive it: `redis-cli` and the
//! Python `redis` client (from PyPI) write, read, compare-and-swap and read a
//! version through real `dida storage` processes; a token-secured cluster wants
//! `AUTH`; and malformed, oversized and unsupported input gets an error reply,
//! leaving the node, the other connections and the data unharmed.
//!
//! `scripts/ensure-redis-clients.sh` (sourced by `scripts/test.sh`) installs
//! redis-cli and redis-py and names the latter's interpreter in
//! `DIDA_TEST_REDIS_PYTHON`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dida_local_cluster::{ClusterSpec, LocalCluster};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{dida, run_ok as run};

/// The Python client: every call with a deadline, one JSON object printed.
const PYTHON_CLIENT: &str = r#"
import json, sys
import redis

port, key, protocol, piped = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10,
                decode_responses=True)
out = {"ping": r.ping(), "set": r.set(key, "from python"), "get": r.get(key)}
out["cas"] = r.execute_command("DIDA.CAS", key, "from python", "swapped")
out["cas_refused"] = r.execute_command("DIDA.CAS", key, "from python", "again")
value, version = r.execute_command("DIDA.GET", key)
out["latest"] = [value, version]
first = "1." + version.split(".")[1]
out["first"] = r.execute_command("DIDA.GET", key, first)
out["mget"] = r.mget([key, key + "-missing"])
pipe = r.pipeline(transaction=False)
for i in range(50):
    pipe.set(piped, str(i))
    pipe.get(piped)
out["pipeline_last"] = pipe.execute()[-1]
try:
    r.flushall()
    out["flushall"] = "accepted"
except redis.ResponseError as e:
    out["flushall"] = str(e)
out["still"] = r.get(key)
print(json.dumps(out))
"#;

fn redis_python() -> PathBuf {
    PathBuf::from(std::env::var_os("DIDA_TEST_REDIS_PYTHON").expect(
        "DIDA_TEST_REDIS_PYTHON is not set: source scripts/ensure-redis-clients.sh first \
         (scripts/test.sh does)",
    ))
}

/// `redis-cli -p PORT ARGS…`, its output trimmed.
fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    run(Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args))
    .trim()
    .to_string()
}

async fn resp_cluster(env: Vec<(String, String)>) -> LocalCluster {
    let cluster = LocalCluster::start(
        dida(),
        ClusterSpec {
            resp: true,
            env,
            ..ClusterSpec::default()
        },
    )
    .await
    .unwrap();
    cluster
        .client()
        .unwrap()
        .wait_until_all_alive(Duration::from_secs(30))
        .await
        .expect("the cluster settles");
    cluster
}

/// A key whose primary is s1: read at s1, a write is seen at once (other replicas
/// catch up asynchronously, SPEC §2.2).
fn key_led_by_s1(cluster: &LocalCluster, prefix: &str) -> String {
    let client = cluster.client().unwrap();
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|key| client.replicas(key).first() == Some(&"s1"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_py_write_read_and_swap() {
    let cluster = resp_cluster(Vec::new()).await;
    let s1 = cluster.resp_addr("s1").unwrap();
    let s2 = cluster.resp_addr("s2").unwrap();

    // redis-cli: written through s2, which forwards to the key's primary s1.
    let key = key_led_by_s1(&cluster, "cli");
    assert_eq!(redis_cli(s2, &["SET", &key, "v1"]), "OK");
    assert_eq!(redis_cli(s1, &["GET", &key]), "v1");
    let swapped = redis_cli(s1, &["DIDA.CAS", &key, "v1", "v2"]);
    let replica = swapped.strip_prefix("2.").expect("the second version");
    assert_eq!(redis_cli(s1, &["DIDA.CAS", &key, "v1", "v3"]), "");
    assert_eq!(
        redis_cli(s1, &["DIDA.GET", &key, &format!("1.{replica}")]),
        format!("v1\n1.{replica}")
    );
    assert_eq!(redis_cli(s1, &["DIDA.GET", &key]), format!("v2\n{swapped}"));
    assert!(redis_cli(s1, &["KEYS", "*"]).contains("not supported"));

    // The Python client, in RESP2 and in RESP3.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), PYTHON_CLIENT).unwrap();
    for protocol in ["2", "3"] {
        let key = key_led_by_s1(&cluster, &format!("py{protocol}"));
        let piped = key_led_by_s1(&cluster, &format!("piped{protocol}"));
        let stdout = run(Command::new(redis_python()).arg(script.path()).args([
            s1.port().to_string().as_str(),
            key.as_str(),
            protocol,
            piped.as_str(),
        ]));
        let out: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        assert_eq!(out["ping"], true, "{out}");
        assert_eq!(out["set"], true, "{out}");
        assert_eq!(out["get"], "from python", "{out}");
        let cas = out["cas"].as_str().expect("a version");
        assert!(cas.starts_with("2."), "{out}");
        assert_eq!(out["cas_refused"], Value::Null, "{out}");
        assert_eq!(out["latest"], serde_json::json!(["swapped", cas]), "{out}");
        assert_eq!(out["first"][0], "from python", "{out}");
        assert_eq!(out["mget"], serde_json::json!(["swapped", null]), "{out}");
        assert_eq!(out["pipeline_last"], "49", "{out}");
        assert!(
            out["flushall"].as_str().unwrap().contains("not supported"),
            "{out}"
        );
        assert_eq!(out["still"], "swapped", "{out}");
    }

    // What RESP wrote, the gRPC client reads.
    let record = cluster
        .client()
        .unwrap()
        .read(&key, None)
        .await
        .unwrap()
        .expect("the key written over RESP");
    assert_eq!(record.value, "v2");
}

/// Sends `bytes` on a new connection and returns everything the node answers
/// until it closes the connection (or 10 s pass: the test fails).
async fn answer_until_closed(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The node may close before it read everything: what it answered still counts.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the node closes a connection it cannot read")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `bytes` on `stream` and reads until the answer ends with `until`.
async fn exchange(stream: &mut TcpStream, bytes: &[u8], until: &str) -> String {
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&answer).ends_with(until) {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {until:?} in {:?}", String::from_utf8_lossy(&answer)));
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_and_harms_nothing() {
    let cluster = resp_cluster(Vec::new()).await;
    let s1 = cluster.resp_addr("s1").unwrap();
    let key = key_led_by_s1(&cluster, "kept");
    assert_eq!(redis_cli(s1, &["SET", &key, "precious"]), "OK");

    // A gigabyte's bulk length: refused at its header, at once, and closed.
    let answer = answer_until_closed(s1, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\n").await;
    assert!(
        answer.starts_with("-ERR Protocol error: invalid bulk length 1073741824"),
        "{answer}"
    );
    // Deep nesting, a million arguments, a malformed length: the same.
    for malformed in [
        b"*1\r\n".repeat(100_000),
        b"*1000000\r\n".to_vec(),
        b"*2\r\n$3\r\nGET\r\n$x\r\n".to_vec(),
        b"*1\r\n$4\r\nPINGXX\r\n".to_vec(),
    ] {
        let answer = answer_until_closed(s1, &malformed).await;
        assert!(answer.starts_with("-ERR Protocol error"), "{answer}");
    }

    // On one connection, errors that leave it open, then a pipeline in order.
    let mut stream = TcpStream::connect(s1).await.unwrap();
    let answer = exchange(
        &mut stream,
        b"NOSUCH a b\r\nFLUSHALL\r\nKEYS *\r\nSET k v EX 10\r\nPING\r\n",
        "+PONG\r\n",
    )
    .await;
    assert_eq!(answer.matches("-ERR").count(), 4, "{answer}");
    assert!(
        answer.starts_with("-ERR unknown command 'nosuch'"),
        "{answer}"
    );
    let answer = exchange(
        &mut stream,
        b"*2\r\n$3\r\nGET\r\n$2\r\n\xff\xfe\r\nPING\r\n",
        "+PONG\r\n",
    )
    .await;
    assert!(answer.contains("UTF-8"), "{answer}");
    // Read at the key's primary, which applied the writes: every read sees the
    // write before it (a replica would catch up asynchronously, SPEC §2.2).
    let piped = key_led_by_s1(&cluster, "piped");
    let pipeline = format!("SET {piped} a\r\nGET {piped}\r\nSET {piped} b\r\nGET {piped}\r\n");
    let answer = exchange(&mut stream, pipeline.as_bytes(), "$1\r\nb\r\n").await;
    assert_eq!(answer, "+OK\r\n$1\r\na\r\n+OK\r\n$1\r\nb\r\n");
    let answer = exchange(&mut stream, b"SET _dida/operators x\r\n", "\r\n").await;
    assert!(answer.starts_with("-NOPERM"), "{answer}");

    // The node serves on, and nothing was lost.
    assert_eq!(redis_cli(s1, &["GET", &key]), "precious");
    let record = cluster.client().unwrap().read(&key, None).await.unwrap();
    assert_eq!(record.unwrap().value, "precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_token_is_the_auth_password() {
    let cluster = resp_cluster(vec![(
        "DIDA_CLUSTER_TOKEN".to_string(),
        "resp-test-token".to_string(),
    )])
    .await;
    let s1 = cluster.resp_addr("s1").unwrap();
    assert!(redis_cli(s1, &["GET", "k"]).starts_with("NOAUTH"));
    assert!(redis_cli(s1, &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    assert!(redis_cli(s1, &["AUTH", "someone", "resp-test-token"]).starts_with("WRONGPASS"));
    let authed = ["-a", "resp-test-token", "--no-auth-warning"];
    assert_eq!(
        redis_cli(s1, &[&authed[..], &["SET", "k", "v"]].concat()),
        "OK"
    );
    assert_eq!(redis_cli(s1, &[&authed[..], &["PING"]].concat()), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_held_to_the_side_port_limits() {
    let cluster = resp_cluster(Vec::new()).await;
    let s1 = cluster.resp_addr("s1").unwrap();
    let info = redis_cli(s1, &["INFO"]);
    let max_clients: usize = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("maxclients:"))
        .expect("INFO names maxclients")
        .parse()
        .unwrap();
    // One source (all of loopback) may hold a quarter of them.
    let per_source = (max_clients / 4).max(8);
    let mut held = Vec::new();
    for _ in 0..per_source {
        let mut stream = TcpStream::connect(s1).await.unwrap();
        assert_eq!(
            exchange(&mut stream, b"PING\r\n", "\r\n").await,
            "+PONG\r\n"
        );
        held.push(stream);
    }
    // The next one is closed at once, unanswered.
    let answer = answer_until_closed(s1, b"PING\r\n").await;
    assert_eq!(
        answer, "",
        "a connection over the per-source limit was served"
    );
    // The gRPC port still serves, and a slot freed is a slot taken.
    cluster.client().unwrap().ping("s1").await.unwrap();
    held.pop();
    let mut stream = eventually_connected(s1).await;
    assert_eq!(
        exchange(&mut stream, b"PING\r\n", "\r\n").await,
        "+PONG\r\n"
    );
}

/// A connection the node serves, once a slot is free again (closing one is seen by
/// the node a moment later).
async fn eventually_connected(addr: SocketAddr) -> TcpStream {
    support::eventually(Duration::from_secs(10), "a freed RESP slot", || async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut reply))
            .await
            .ok()?
            .ok()?;
        (&reply == b"+PONG\r\n").then_some(stream)
    })
    .await
}
