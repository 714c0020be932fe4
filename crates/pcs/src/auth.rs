//! The PCS's shared-secret token: when a PCS is given one, every request must carry
//! it in the [`TOKEN_HEADER`] metadata entry (its client adds it), or it is refused
//! as unauthenticated.
//!
//! A token is what keeps a PCS reachable from other machines from being usable by
//! anyone who can reach its port. It is compared in constant time.

use dida_proto::security::tokens_match;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The gRPC metadata entry carrying the token.
pub const TOKEN_HEADER: &str = "x-dida-token";

/// The environment variable `dida pcs` and `dida puppetmaster` read the token from
/// when no `--token` flag is given.
pub const TOKEN_ENV: &str = "DIDA_PCS_TOKEN";

/// Server side: refuses requests without the expected token (accepts all when the
/// PCS has none).
#[derive(Debug, Clone)]
pub struct RequireToken {
    expected: Option<String>,
}

impl RequireToken {
    /// Requires `expected`, or nothing when `None`.
    pub fn new(expected: Option<String>) -> Self {
        Self { expected }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok());
        match given {
            Some(given) if tokens_match(given.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong PCS token")),
            None => Err(Status::unauthenticated(format!(
                "this PCS requires a token (metadata {TOKEN_HEADER}; `--token` or \
                 {TOKEN_ENV} on the PuppetMaster)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert(TOKEN_HEADER, token.parse().unwrap());
        }
        request
    }

    #[test]
    fn a_pcs_with_a_token_refuses_requests_without_it() {
        let mut pcs = RequireToken::new(Some("s3cret".into()));
        assert!(pcs.call(with(Some("s3cret"))).is_ok());
        let missing = pcs.call(with(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("requires a token"));
        let wrong = pcs.call(with(Some("guess"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(pcs.call(with(Some("s3cret2"))).is_err());
    }

    #[test]
    fn a_pcs_without_a_token_accepts_every_request() {
        let mut pcs = RequireToken::new(None);
        assert!(pcs.call(with(None)).is_ok());
        assert!(pcs.call(with(Some("anything"))).is_ok());
        assert!(crate::client::PcsClient::new("http://127.0.0.1:1", Some("bad\ntoken")).is_err());
    }
}
