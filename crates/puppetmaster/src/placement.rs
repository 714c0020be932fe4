//! Which PCS starts a node: the one on the machine the node's URL names.
//!
//! A node listens on its URL's host, so it must run on that machine; the PCS there
//! is the one whose own URL has the same host. `localhost`, `127.0.0.1` and `::1` all
//! name the local machine and match each other.

use dida_core::membership::NodeUrl;

/// A host name reduced for comparison: lower case, without IPv6 brackets, every
/// loopback name mapped to one.
fn normalize(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    match host.as_str() {
        "localhost" | "::1" => "loopback".into(),
        h if h.starts_with("127.") => "loopback".into(),
        _ => host,
    }
}

/// The index in `pcs_urls` of the PCS that must start a node at `url`.
pub fn place(url: &NodeUrl, pcs_urls: &[String]) -> Result<usize, String> {
    let wanted = normalize(&url.host);
    pcs_urls
        .iter()
        .position(|pcs| {
            NodeUrl::parse(pcs)
                .map(|p| normalize(&p.host) == wanted)
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            format!(
                "no PCS runs on host {} (PCSs: {}); start `dida pcs` there and pass it with --pcs",
                url.host,
                pcs_urls.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> NodeUrl {
        NodeUrl::parse(text).unwrap()
    }

    #[test]
    fn nodes_go_to_the_pcs_of_their_host() {
        let pcs = vec![
            "http://10.0.0.1:10000".to_string(),
            "http://127.0.0.1:10000".to_string(),
            "http://Node-B:10000".to_string(),
        ];
        assert_eq!(place(&url("http://10.0.0.1:3000"), &pcs), Ok(0));
        assert_eq!(place(&url("http://localhost:3000"), &pcs), Ok(1));
        assert_eq!(place(&url("http://[::1]:3000"), &pcs), Ok(1));
        assert_eq!(place(&url("http://node-b:3000"), &pcs), Ok(2));
        let missing = place(&url("http://10.0.0.9:3000"), &pcs).unwrap_err();
        assert!(
            missing.contains("no PCS runs on host 10.0.0.9"),
            "{missing}"
        );
    }
}
