//! `dida up`: a whole cluster on this machine in one command, for developing
//! operators and applications — storage nodes, workers, the scheduler with its HTTP
//! gateway, and the dashboard, at the addresses of [`dida_settings::local`], which
//! every client command uses by default. It runs until Ctrl-C (or SIGTERM), then
//! stops every node it started.
//!
//! It is a PuppetMaster session whose setup block is written from the flags, so the
//! nodes start, are checked and stop exactly as a script's would.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use dida_core::limits::DEFAULT_REPLICATION_FACTOR;
use dida_pcs::launch::LOG_LEVELS;
use dida_puppetmaster::{PmConfig, Printer};
use dida_settings::local::{LocalLayout, DEFAULT_BASE_PORT, MAX_NODES_PER_ROLE};

/// Flags of `dida up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The first port of the cluster's block: the scheduler listens on it, storage
    /// node sN on PORT+N, worker wN on PORT+10+N, the HTTP gateway on PORT+80 and the
    /// dashboard on PORT+81, all on 127.0.0.1. Clients find the scheduler by
    /// default only at the default port (else give them --scheduler or
    /// DIDA_SCHEDULER, as `dida up` prints).
    #[arg(long, default_value_t = DEFAULT_BASE_PORT, env = "DIDA_UP_PORT")]
    port: u16,
    /// Storage nodes (1 to 9); the replication factor is 3, or fewer with fewer
    /// nodes.
    #[arg(long, default_value_t = 3, env = "DIDA_UP_STORAGE")]
    storage: usize,
    /// Workers (1 to 9).
    #[arg(long, default_value_t = 2, env = "DIDA_UP_WORKERS")]
    workers: usize,
    /// A directory of <ClassName>.wasm operators every worker runs besides the
    /// built-ins and the deployed ones (`dida operator deploy` needs none).
    #[arg(long, env = "DIDA_UP_OPERATORS")]
    operators: Option<PathBuf>,
    /// Serve no dashboard.
    #[arg(long, env = "DIDA_UP_NO_DASHBOARD")]
    no_dashboard: bool,
    /// RUST_LOG of the nodes (their lines are relayed to stderr, prefixed with the
    /// node id): error, warn, info, debug or trace.
    #[arg(long, default_value = "warn", env = "DIDA_UP_NODE_LOG")]
    node_log: String,
}

/// Runs `dida up` until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let layout = LocalLayout::new(args.port).map_err(anyhow::Error::msg)?;
    for (flag, count) in [("--storage", args.storage), ("--workers", args.workers)] {
        anyhow::ensure!(
            (1..=MAX_NODES_PER_ROLE).contains(&count),
            "{flag} {count}: give 1 to {MAX_NODES_PER_ROLE}"
        );
    }
    anyhow::ensure!(
        LOG_LEVELS.contains(&args.node_log.as_str()),
        "--node-log must be one of {}",
        LOG_LEVELS.join(", ")
    );
    let binary = std::env::current_exe().context("cannot locate the running dida binary")?;
    let mut config = PmConfig::new(binary);
    config.replication_factor = DEFAULT_REPLICATION_FACTOR.min(args.storage);
    config.operators = match args.operators {
        Some(dir) => Some(
            std::path::absolute(&dir)
                .with_context(|| format!("invalid --operators {}", dir.display()))?,
        ),
        None => None,
    };
    config.node_log = args.node_log;
    config.http_listen = Some(layout.http_listen());
    config.resp_port_offset = Some(dida_settings::local::RESP_PORT_OFFSET);
    config.dashboard = (!args.no_dashboard).then(|| layout.dashboard_listen());
    let setup = setup(&layout, args.storage, args.workers);
    let printer = Arc::new(Printer::stdio(false));
    let dashboard = config.dashboard;
    dida_puppetmaster::serve(config, &setup, printer, |printer| {
        printer.text(|| banner(&layout, args.storage, args.workers, dashboard.is_some()));
    })
    .await
}

/// The setup block: the scheduler, the storage nodes and the workers of the layout.
fn setup(layout: &LocalLayout, storage: usize, workers: usize) -> String {
    let mut lines = vec![format!("scheduler scheduler {}", layout.scheduler_url())];
    lines.extend((1..=storage).map(|n| format!("storage s{n} {} 0", layout.storage_url(n))));
    lines.extend((1..=workers).map(|n| format!("worker w{n} {} 0", layout.worker_url(n))));
    lines.join("\n")
}

/// What `dida up` prints once the cluster answers: where everything is, and the
/// developer loop's next commands.
fn banner(layout: &LocalLayout, storage: usize, workers: usize, dashboard: bool) -> String {
    let scheduler = layout.scheduler_url();
    let mut text = format!(
        "dida is up: {storage} storage node(s), {workers} worker(s) and a scheduler on this machine\n\
         \n  scheduler    {scheduler}\n  HTTP         http://{}/v1/apps\n  \
         Redis        redis-cli -p {}   (s1; sN at {} + N)\n",
        layout.http_listen(),
        layout.resp_listen(1).port(),
        layout.resp_listen(0).port(),
    );
    if dashboard {
        text.push_str(&format!(
            "  dashboard    http://{}/\n",
            layout.dashboard_listen()
        ));
    }
    if scheduler != dida_settings::local::DEFAULT_SCHEDULER_URL {
        text.push_str(&format!(
            "\nClient commands look for the scheduler at {}: in another terminal,\n  \
             export DIDA_SCHEDULER={scheduler}\n",
            dida_settings::local::DEFAULT_SCHEDULER_URL
        ));
    }
    text.push_str(
        "\nIn another terminal:\n  \
         dida new HelloOperator --lang python   (or rust, js)\n  \
         cd hello-operator && dida build\n  \
         dida operator deploy build/HelloOperator.wasm\n  \
         dida run --operators HelloOperator --input world\n\
         \nCtrl-C stops the cluster (its records live in memory).",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_declares_every_node_of_the_layout() {
        let layout = LocalLayout::new(7000).unwrap();
        assert_eq!(
            setup(&layout, 2, 1),
            "scheduler scheduler http://127.0.0.1:7000\n\
             storage s1 http://127.0.0.1:7001 0\n\
             storage s2 http://127.0.0.1:7002 0\n\
             worker w1 http://127.0.0.1:7011 0"
        );
    }

    #[test]
    fn the_banner_says_how_to_reach_a_cluster_off_the_default_port() {
        let default = banner(&LocalLayout::new(7000).unwrap(), 3, 2, true);
        assert!(!default.contains("DIDA_SCHEDULER"), "{default}");
        assert!(default.contains("http://127.0.0.1:7081/"), "{default}");
        let moved = banner(&LocalLayout::new(9000).unwrap(), 3, 2, false);
        assert!(
            moved.contains("export DIDA_SCHEDULER=http://127.0.0.1:9000"),
            "{moved}"
        );
        assert!(!moved.contains("dashboard"), "{moved}");
    }
}
