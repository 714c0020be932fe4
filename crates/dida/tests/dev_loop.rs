//! The developer loop as a new user runs it, from an empty directory, with no flag
//! a default could give (docs/operators.md, "From zero"): `dida up` in one
//! terminal, then in another, for each language, `dida new` → `dida build` →
//! `dida operator deploy` → `dida run --operators …`. Then the application
//! commands: `dida app register|list|remove`, `dida run NAME`, the HTTP gateway
//! `dida up` serves, and the refusal to remove an operator that a registered
//! application uses. Last, Ctrl-C (SIGINT) stops `dida up` and every node it
//! started.
//!
//! `dida up` binds its default ports (7000-7081 on 127.0.0.1, RESP on 7021-7023): the point is that
//! the clients find it with no `--scheduler`. Other tests use ports the system
//! picks, from the ephemeral range, so they do not collide with these.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{as_on_a_users_machine, dida, stderr, stdout, target_dir};

/// `dida up`, killed (with every node: they die with it) if the test fails.
struct Up {
    child: Child,
    /// Every line `dida up` printed so far, on stdout and stderr.
    lines: mpsc::Receiver<String>,
}

impl Up {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(dida())
            .arg("up")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dida up");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self { child, lines }
    }

    /// Waits (up to `limit`) for a line containing `text`; returns what was printed.
    fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(text) {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("dida up did not print {text:?} within {limit:?}; it printed:\n{seen}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dida ARGS…` in `dir`, as a user's shell runs it.
fn dida_in(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(dida());
    command
        .current_dir(dir)
        .args(args)
        .env_remove("DIDA_SCHEDULER")
        // A Rust operator builds where the other tests build theirs, incrementally.
        .env("CARGO_TARGET_DIR", target_dir());
    as_on_a_users_machine(&mut command);
    command.output().expect("run dida")
}

/// `dida ARGS…` in `dir`, which must succeed; its standard output.
fn ok(dir: &Path, args: &[&str]) -> String {
    let output = dida_in(dir, args);
    assert!(
        output.status.success(),
        "dida {}: {}\n{}",
        args.join(" "),
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// `GET path` from the HTTP gateway `dida up` serves; the response's body.
fn http_get(path: &str) -> String {
    let mut stream = TcpStream::connect("127.0.0.1:7080").expect("the HTTP gateway listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:7080\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn dida_up_then_new_build_deploy_and_run_in_every_language() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let mut up = Up::start(dir);
    let banner = up.wait_for("Ctrl-C stops the cluster", Duration::from_secs(120));
    assert!(
        banner.contains("scheduler    http://127.0.0.1:7000"),
        "{banner}"
    );
    // Every storage node speaks Redis too, at its port + 20.
    assert!(banner.contains("redis-cli -p 7021"), "{banner}");
    let redis_cli = |port: &str, args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", port])
            .args(args)
            .output()
            .expect("redis-cli runs (scripts/ensure-redis-clients.sh installs it)");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(redis_cli("7022", &["SET", "dev-loop", "hello"]), "OK");
    // s1 sees it at once if it leads the key, after gossip otherwise.
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis_cli("7021", &["GET", "dev-loop"]) != "hello" {
        assert!(Instant::now() < deadline, "s1 never served the key s2 took");
        std::thread::sleep(Duration::from_millis(50));
    }

    for (lang, class, package) in [
        ("python", "HelloPython", "hello-python"),
        ("js", "HelloJs", "hello-js"),
        ("rust", "HelloRust", "hello-rust"),
    ] {
        let created = ok(dir, &["new", class, "--lang", lang]);
        assert!(created.contains("dida run --operators"), "{created}");
        let operator = dir.join(package);
        let built = ok(&operator, &["build"]);
        let component = built.lines().last().unwrap().trim().to_string();
        assert!(component.ends_with(&format!("{class}.wasm")), "{built}");
        let deployed = ok(&operator, &["operator", "deploy", &component]);
        assert!(
            deployed.contains(&format!("deployed {class}")),
            "{deployed}"
        );
        // Every scaffold counts greetings under `greeted/<input>`: one name each.
        let ran = ok(&operator, &["run", "--operators", class, "--input", lang]);
        assert!(
            ran.contains(&format!("hello, {lang} (#1)")),
            "{lang}: {ran}"
        );
    }

    // A registered application: run by name, over HTTP too, and it keeps its
    // operators deployed.
    let registered = ok(
        dir,
        &["app", "register", "greet", "--operators", "HelloPython"],
    );
    assert!(registered.contains("registered greet"), "{registered}");
    let listed = ok(dir, &["app", "list"]);
    assert!(
        listed.contains("greet") && listed.contains("HelloPython"),
        "{listed}"
    );
    let ran = ok(dir, &["run", "greet", "--input", "you"]);
    assert!(ran.contains("hello, you (#1)"), "{ran}");
    let apps = http_get("/v1/apps");
    assert!(apps.contains("\"greet\""), "{apps}");

    let refused = dida_in(dir, &["operator", "remove", "HelloPython"]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("used by registered application(s) greet"),
        "{}",
        stderr(&refused)
    );
    let unknown = dida_in(dir, &["run", "no-such-app", "--input", "x"]);
    assert!(
        stderr(&unknown).contains("neither an application file nor a registered application"),
        "{}",
        stderr(&unknown)
    );
    ok(dir, &["app", "remove", "greet"]);
    let removed = ok(dir, &["operator", "remove", "HelloPython"]);
    assert!(removed.contains("removed HelloPython"), "{removed}");

    // Ctrl-C: every node stops and `dida up` exits cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "dida up still runs 60 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "dida up exited with {status}");
    for port in [7000, 7001, 7002, 7003, 7011, 7012, 7021, 7080, 7081] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after dida up stopped"
        );
    }
}
