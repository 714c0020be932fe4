//! Which browsers' requests the dashboard answers: those addressed to it, from its
//! own pages.
//!
//! A web page on any site can make the visitor's browser send requests to
//! `127.0.0.1:8080`; with DNS rebinding (a name of the attacker's that first
//! resolves to their server, then to 127.0.0.1) it can even read the answers,
//! since the browser believes both are the attacker's origin. The dashboard reads
//! records and, beside a PuppetMaster, runs script lines, so every request must
//! name the dashboard's own address in `Host` (a rebinding request names the
//! attacker's domain: refused with 421), and a request a page sends with an
//! `Origin` must come from the dashboard's own origin (refused with 403).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Whether `host` (a `Host` header's value: `name[:port]` or `[v6][:port]`) names
/// the dashboard listening on `listen`: the right port, and either a loopback name
/// (`localhost`, any loopback address) or the address it listens on (any IP
/// address when it listens on all of them). Names other than `localhost` are
/// refused: a rebinding attack needs a name, while a person can always type the
/// address.
pub(crate) fn host_allowed(host: &str, listen: SocketAddr) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    if port != listen.port() {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || listen.ip().is_unspecified() || ip == listen.ip(),
        Err(_) => false,
    }
}

/// The name and port of a `Host` value (port 80 when it names none).
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        match after {
            "" => (name, None),
            _ => (name, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 80,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Whether `origin` (an `Origin` header's value) is the dashboard's own origin
/// when it is reached as `host`.
pub(crate) fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// Refuses a request not addressed to the dashboard (421) or sent by another
/// site's page (403), with a message saying why; passes the others on.
pub(crate) async fn check(
    State(listen): State<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let refuse = |status: StatusCode, error: String| {
        (status, Json(json!({ "error": error }))).into_response()
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, listen) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this dashboard answers requests addressed to {listen} or \
                 localhost:{port} only, not to {host:?} (a page of another site may \
                 not use it)",
                port = listen.port()
            ),
        );
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !same_origin(origin, host) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from the page of {origin:?} are refused: only the \
                     dashboard's own page (http://{host}) may use it"
                ),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dashboards_own_address_is_a_host() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "127.0.0.2:8080",
        ] {
            assert!(host_allowed(host, listen), "{host}");
        }
        for host in [
            "",
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost",
            "10.0.0.1:8080",
            "[::1]",
            "[::1:8080",
            ":8080",
            "127.0.0.1:x",
        ] {
            assert!(!host_allowed(host, listen), "{host}");
        }
        let everywhere: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert!(host_allowed("10.0.0.1", everywhere));
        assert!(host_allowed("10.0.0.1:80", everywhere));
        assert!(!host_allowed("rebind.example", everywhere));
        let one: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        assert!(host_allowed("10.0.0.5:8080", one));
        assert!(!host_allowed("10.0.0.6:8080", one));
    }

    #[test]
    fn only_the_dashboards_own_page_is_an_origin() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://LocalHost:8080", "localhost:8080"));
        for origin in [
            "null",
            "http://evil.example",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8080/",
        ] {
            assert!(!same_origin(origin, "127.0.0.1:8080"), "{origin}");
        }
    }
}
