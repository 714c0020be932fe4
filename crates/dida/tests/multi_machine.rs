//! The PuppetMaster across machines: two network namespaces joined by a veth pair
//! stand for two machines, each with its own `dida pcs` (listening on its own
//! address, with a token), and the PuppetMaster places every node on the PCS of its
//! URL's host. The nodes, reachable from the other machine, guard the calls between
//! them with a cluster token.
//!
//! Network namespaces need root: the test is skipped, with a message saying so,
//! when it runs as another user or where namespaces cannot be created.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const TOKEN: &str = "multi-machine-test-token";

/// The nodes listen on addresses other machines reach, so they must authenticate
/// the calls between them: every process gets the cluster token, and passes it on
/// to the nodes it starts.
const CLUSTER_TOKEN: &str = "multi-machine-cluster-token";

fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces `<tag>a` (10.X.Y.1) and `<tag>b` (10.X.Y.2) joined by a veth
/// pair; deleted when dropped.
struct Machines {
    names: [String; 2],
    addresses: [String; 2],
}

impl Machines {
    /// The machines of test `test`, or `None` after saying on stderr why the test
    /// is skipped: namespaces need root, and a machine that can make them.
    fn for_test(test: u32) -> Option<Self> {
        // The effective user id, from /proc (field 3 of the Uid: line).
        let root = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false);
        if !root {
            skip("network namespaces need root");
            return None;
        }
        let machines = Self::create(test);
        if machines.is_none() {
            skip("cannot create network namespaces and a veth pair here");
        }
        machines
    }

    /// The machines of test `test` (0, 1, …): tests run at once in one process,
    /// so each has names and a subnet of its own.
    fn create(test: u32) -> Option<Self> {
        let pid = std::process::id();
        let tag = format!("dida{}{test}", pid % 100_000);
        let subnet = format!("10.{}.{}", 100 + pid % 100, (pid * 2 + test) % 250);
        let machines = Self {
            names: [format!("{tag}a"), format!("{tag}b")],
            addresses: [format!("{subnet}.1"), format!("{subnet}.2")],
        };
        let [a, b] = &machines.names;
        let ok = ip(&["netns", "add", a])
            && ip(&["netns", "add", b])
            && ip(&[
                "link",
                "add",
                &format!("{tag}x"),
                "netns",
                a,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{tag}y"),
                "netns",
                b,
            ])
            && ip(&[
                "-n",
                a,
                "addr",
                "add",
                &format!("{}/24", machines.addresses[0]),
                "dev",
                &format!("{tag}x"),
            ])
            && ip(&[
                "-n",
                b,
                "addr",
                "add",
                &format!("{}/24", machines.addresses[1]),
                "dev",
                &format!("{tag}y"),
            ])
            && [a, b]
                .iter()
                .all(|ns| ip(&["-n", ns, "link", "set", "lo", "up"]))
            && ip(&["-n", a, "link", "set", &format!("{tag}x"), "up"])
            && ip(&["-n", b, "link", "set", &format!("{tag}y"), "up"]);
        ok.then_some(machines)
    }

    /// `dida ARGS` run inside namespace `index`.
    fn dida(&self, index: usize) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.names[index]])
            .arg(dida())
            .env("DIDA_PCS_TOKEN", TOKEN)
            .env("DIDA_CLUSTER_TOKEN", CLUSTER_TOKEN)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for name in &self.names {
            ip(&["netns", "del", name]);
        }
    }
}

/// Says why the test is skipped, on the real stderr: the test harness captures
/// `eprintln!` of passing tests, and a skip must be visible.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED multi-machine test: {why}");
}

async fn start_pcs(machines: &Machines, index: usize) -> Child {
    let listen = format!("{}:10000", machines.addresses[index]);
    machines
        .dida(index)
        .args(["pcs", "--listen", &listen])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puppetmaster_places_nodes_on_the_pcs_of_their_machine() {
    let Some(machines) = Machines::for_test(0) else {
        return;
    };
    let _pcs_a = start_pcs(&machines, 0).await;
    let _pcs_b = start_pcs(&machines, 1).await;
    let [a, b] = &machines.addresses;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "23,11\n").unwrap();
    std::fs::write(
        dir.path().join("app.txt"),
        "operator AddOperator 0\noperator UpdateAndChainOperator 1\n",
    )
    .unwrap();
    let script = format!(
        "scheduler sched http://{a}:3000\n\
         storage s1 http://{a}:3001 0\n\
         storage s2 http://{b}:3001 0\n\
         worker w1 http://{b}:4001 0\n\
         worker w2 http://{a}:4001 0\n\
         populate data.txt\n\
         client 23 app.txt\n\
         await\n\
         listGlobal\n"
    );
    let path = dir.path().join("script.txt");
    std::fs::write(&path, script).unwrap();
    // The PCSs may take a moment to listen: retry the run until they answer.
    let deadline = Instant::now() + Duration::from_secs(100);
    let output = loop {
        let output = machines
            .dida(0)
            .arg("pm")
            .arg(&path)
            .args(["--batch", "--json", "--replication-factor", "2"])
            .args(["--pcs", &format!("http://{a}:10000,http://{b}:10000")])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("does not answer") {
            break output;
        }
        assert!(
            Instant::now() < deadline,
            "the PCSs did not answer: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let placed = |node: &str| {
        events
            .iter()
            .find(|e| e["event"] == "node" && e["node"] == node && e["state"] == "started")
            .map(|e| e["pcs"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(placed("s1"), format!("http://{a}:10000"));
    assert_eq!(placed("s2"), format!("http://{b}:10000"));
    assert_eq!(placed("w1"), format!("http://{b}:10000"));
    let client = events.iter().find(|e| e["event"] == "client").unwrap();
    assert_eq!(client["status"], "ok", "{client}");
    assert_eq!(client["outputs"], serde_json::json!(["12", "end"]));
    for server in ["s1", "s2"] {
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "record" && e["server"] == server && e["key"] == "23"),
            "{server} holds key 23 (replication factor 2 across both machines)"
        );
    }
}

/// A name only the other machine resolves: namespace `b`'s `/etc/hosts` (which
/// `ip netns exec` mounts from `/etc/netns/<b>/hosts`) maps it to machine a.
const FAR_NAME: &str = "dida-far-s1";

/// Gives namespace `ns` an `/etc/hosts` mapping `name` to `address`; removed when
/// dropped.
struct HostsFile(std::path::PathBuf);

impl HostsFile {
    fn create(ns: &str, name: &str, address: &str) -> std::io::Result<Self> {
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{address} {name}\n"),
        )?;
        Ok(Self(dir))
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--listen 0.0.0.0:PORT --url http://NAME:PORT`: a storage node that binds every
/// interface of machine a and is known to its peer and its clients, on machine b,
/// only by a name machine a cannot resolve. Every write needs both replicas
/// (`--write-acks 2`), so each one that succeeds crossed between the nodes; the
/// records listed at the far node, asked by its name, are the proof that it
/// serves there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listening_on_every_interface_serves_peers_that_know_only_its_name() {
    let Some(machines) = Machines::for_test(1) else {
        return;
    };
    let [a, b] = &machines.addresses;
    let _hosts = HostsFile::create(&machines.names[1], FAR_NAME, a).unwrap();
    let peers = format!("s1=http://{FAR_NAME}:7001,s2=http://{b}:7001");
    let storage = |index: usize, id: &str, url: &str, listen: &str| {
        machines
            .dida(index)
            .args(["storage", "--id", id, "--url", url, "--listen", listen])
            .args(["--peers", &peers, "--replication-factor", "2"])
            .args(["--write-acks", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let _s1 = storage(0, "s1", &format!("http://{FAR_NAME}:7001"), "0.0.0.0:7001");
    let _s2 = storage(1, "s2", &format!("http://{b}:7001"), &format!("{b}:7001"));
    let kv = |args: &[&str]| {
        let mut command = machines.dida(1);
        command
            .args(["kv", "--peers", &peers, "--replication-factor", "2"])
            .args(args);
        command
    };
    // The nodes may take a moment to listen and find each other: retry the first
    // write until it is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..10 {
        let (key, value) = (format!("key{i}"), format!("value{i}"));
        loop {
            let output = kv(&["write", &key, &value]).output().await.unwrap();
            if output.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} was never acknowledged: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let output = kv(&["list", "--server", "s1"]).output().await.unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for i in 0..10 {
        assert!(
            listed.contains(&format!("key{i}")),
            "s1, asked at {FAR_NAME}, lists key{i}: {listed}"
        );
    }
    // Machine a itself cannot resolve the name the node advertises.
    let output = machines
        .dida(0)
        .args(["kv", "--peers", &peers, "--replication-factor", "2"])
        .args(["list", "--server", "s1"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "machine a resolved {FAR_NAME}");
}
