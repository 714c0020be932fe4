//! One bound, one place: every bound of a role's settings is read here from its one
//! constant in `dida_core::limits`, and the CLI (a real `dida storage` process,
//! which must refuse at start-up), the PCS's check of a start request, the
//! PuppetMaster's check of a script and local-cluster all accept the bound and
//! refuse one past it. Changing a constant changes what every one of them does.
//!
//! Also: every flag reads its `DIDA_<ROLE>_<FLAG>` variable, and a subcommand's
//! `--help` lists only the options it uses.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dida_core::limits::{MAX_DEADLINE_MS, MAX_GOSSIP_DELAY_MS, MAX_VERSIONS, MAX_VNODES};
use dida_core::script::{parse_script, NodeDecl};
use dida_local_cluster::{free_ports, ClusterSpec};
use dida_pcs::launch::Launch;
use dida_proto::control::{Flag, StartNodeRequest};
use dida_puppetmaster::requests::start_requests;
use dida_puppetmaster::PmConfig;

fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

/// The replication factor of the write-acks case: one node, so one replica.
const FACTOR: u64 = 1;

/// `dida storage` with `flag=value` (and `env`): `Ok` once it listens (it is then
/// killed), `Err(stderr)` if it exits first.
fn storage_process(flag: Option<(&str, u64)>, env: &[(&str, String)]) -> Result<(), String> {
    let port = free_ports(1).unwrap()[0];
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(dida());
    command
        .args(["storage", "--id=s1", &format!("--url={url}")])
        .arg(format!("--peers=s1={url}"))
        .env("DIDA_INSECURE", "true")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((flag, value)) = flag {
        command.arg(format!("--{flag}={value}"));
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            child.kill().unwrap();
            child.wait().unwrap();
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "dida storage neither listened nor exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PCS's check of a request to start storage node s1 with `flag=value`.
fn pcs_check(flag: &str, value: u64) -> Result<Launch, String> {
    Launch::from_request(&StartNodeRequest {
        role: "storage".into(),
        node_id: "s1".into(),
        url: "http://127.0.0.1:7001".into(),
        flags: [
            ("peers", "s1=http://127.0.0.1:7001".to_string()),
            (flag, value.to_string()),
        ]
        .into_iter()
        .map(|(name, value)| Flag {
            name: name.into(),
            value,
        })
        .collect(),
        log_level: String::new(),
    })
    .map_err(|refused| refused.0)
}

/// The PuppetMaster's check of a one-storage-node script (`line`) with `config`.
fn pm_check(line: &str, config: &PmConfig) -> Result<(), String> {
    let (lines, errors) = parse_script(line);
    if let Some(error) = errors.first() {
        return Err(error.to_string());
    }
    let decls: Vec<NodeDecl> = lines
        .into_iter()
        .filter_map(|line| match line.command {
            dida_core::script::Command::Node(decl) => Some(decl),
            _ => None,
        })
        .collect();
    start_requests(config, &decls).map(|_| ())
}

fn pm_config() -> PmConfig {
    PmConfig::new("/nonexistent/dida".into())
}

const SCRIPT: &str = "storage s1 http://127.0.0.1:7001 0";

/// A one-node local-cluster spec, checked as `LocalCluster::start` checks it.
fn cluster_check(change: impl FnOnce(&mut ClusterSpec)) -> Result<(), String> {
    let mut spec = ClusterSpec {
        nodes: 1,
        replication_factor: FACTOR as usize,
        ..ClusterSpec::default()
    };
    change(&mut spec);
    spec.check().map_err(|e| e.to_string())
}

/// `check` accepts `bound` and refuses `bound + 1`, naming `flag`.
fn follows(who: &str, flag: &str, bound: u64, check: impl Fn(u64) -> Result<(), String>) {
    if let Err(refused) = check(bound) {
        panic!("{who} refuses --{flag}={bound}: {refused}");
    }
    match check(bound + 1) {
        Ok(()) => panic!("{who} accepts --{flag}={}", bound + 1),
        Err(refused) => assert!(
            refused.contains(flag),
            "{who}'s refusal of --{flag}={} does not name it: {refused}",
            bound + 1
        ),
    }
}

#[test]
fn the_deadline_bound_is_one_constant() {
    let flag = "anti-entropy-interval";
    follows("dida storage", flag, MAX_DEADLINE_MS, |v| {
        storage_process(Some((flag, v)), &[])
    });
    follows("the PCS", flag, MAX_DEADLINE_MS, |v| {
        pcs_check(flag, v).map(|_| ())
    });
    follows("local-cluster", flag, MAX_DEADLINE_MS, |v| {
        cluster_check(|spec| spec.anti_entropy_interval_ms = v)
    });
    // The PuppetMaster's own deadlines share the bound (it sets no node deadline).
    follows("dida pm", "--rpc-deadline", MAX_DEADLINE_MS, |v| {
        let output = Command::new(dida())
            .args(["pm", "--batch", "/nonexistent/script"])
            .arg(format!("--rpc-deadline={v}"))
            .env("DIDA_INSECURE", "true")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success());
        // Accepted: it gets as far as reading the script.
        match stderr.contains("--rpc-deadline") {
            true => Err(stderr),
            false => Ok(()),
        }
    });
}

#[test]
fn the_gossip_delay_bound_is_one_constant() {
    let flag = "gossip-delay";
    follows("dida storage", flag, MAX_GOSSIP_DELAY_MS, |v| {
        storage_process(Some((flag, v)), &[])
    });
    follows("the PCS", flag, MAX_GOSSIP_DELAY_MS, |v| {
        pcs_check(flag, v).map(|_| ())
    });
    follows(
        "the PuppetMaster",
        "gossip_delay",
        MAX_GOSSIP_DELAY_MS,
        |v| {
            pm_check(
                &format!("storage s1 http://127.0.0.1:7001 {v}"),
                &pm_config(),
            )
        },
    );
    follows("local-cluster", flag, MAX_GOSSIP_DELAY_MS, |v| {
        cluster_check(|spec| spec.gossip_delays_ms = vec![v])
    });
}

#[test]
fn the_vnodes_bound_is_one_constant() {
    // The PuppetMaster and local-cluster leave --vnodes at its default.
    let bound = u64::from(MAX_VNODES);
    follows("dida storage", "vnodes", bound, |v| {
        storage_process(Some(("vnodes", v)), &[])
    });
    follows("the PCS", "vnodes", bound, |v| {
        pcs_check("vnodes", v).map(|_| ())
    });
}

#[test]
fn the_max_versions_bound_is_one_constant() {
    let flag = "max-versions";
    let bound = MAX_VERSIONS as u64;
    follows("dida storage", flag, bound, |v| {
        storage_process(Some((flag, v)), &[])
    });
    follows("the PCS", flag, bound, |v| pcs_check(flag, v).map(|_| ()));
    follows("the PuppetMaster", flag, bound, |v| {
        let mut config = pm_config();
        config.max_versions = v as usize;
        pm_check(SCRIPT, &config)
    });
    follows("local-cluster", flag, bound, |v| {
        cluster_check(|spec| spec.max_versions = v as usize)
    });
}

#[test]
fn write_acks_are_bounded_by_the_replication_factor_everywhere() {
    let flag = "write-acks";
    follows("dida storage", flag, FACTOR, |v| {
        storage_process(Some((flag, v)), &[])
    });
    follows("the PCS", flag, FACTOR, |v| pcs_check(flag, v).map(|_| ()));
    follows("the PuppetMaster", flag, FACTOR, |v| {
        let mut config = pm_config();
        config.replication_factor = FACTOR as usize;
        config.write_acks = v as usize;
        pm_check(SCRIPT, &config)
    });
    follows("local-cluster", flag, FACTOR, |v| {
        cluster_check(|spec| spec.write_acks = v as usize)
    });
}

#[test]
fn every_flag_also_reads_its_environment_variable() {
    let over = (u64::from(MAX_VNODES) + 1).to_string();
    let refused = storage_process(None, &[("DIDA_STORAGE_VNODES", over)]).unwrap_err();
    assert!(refused.contains("--vnodes"), "{refused}");
    // A flag given on the command line wins over its variable.
    let stale = ("DIDA_STORAGE_VNODES", "0".to_string());
    assert!(storage_process(Some(("vnodes", 64)), &[stale]).is_ok());
}

/// `dida <args> --help`.
fn help(args: &[&str]) -> String {
    let output = Command::new(dida())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn help_lists_only_the_options_a_subcommand_uses() {
    for local in [&["new"][..], &["certs"], &["completions"], &["sim"]] {
        let text = help(local);
        for foreign in ["--tls-dir", "--cluster-token", "--insecure", "--log-format"] {
            assert!(
                !text.contains(foreign),
                "dida {local:?} --help lists {foreign}"
            );
        }
    }
    for connected in [&["storage"][..], &["kv", "read"], &["pm"], &["run"]] {
        let text = help(connected);
        for own in ["--tls-dir", "--insecure", "--log-format"] {
            assert!(text.contains(own), "dida {connected:?} --help lacks {own}");
        }
    }
    // A screenful: its own three options, no connection flags.
    assert!(help(&["new"]).lines().count() < 30);
}
