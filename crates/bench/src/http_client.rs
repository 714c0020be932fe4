//! A small HTTP/1.1 client for the scheduler's gateway, used by `dida bench http`
//! and by the gateway's tests: what any HTTP client does (connection pooling,
//! `Content-Length`, a deadline per request), on hyper, the HTTP stack tonic and
//! axum already run on.

use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
/// Re-exported so that users of the client need no direct dependency on hyper.
pub use hyper::{Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An HTTP client with a deadline on every request.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    deadline: Duration,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The body, as text (the gateway answers JSON or YAML).
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the body is not JSON: {:?}", self.body))
    }
}

impl HttpClient {
    /// A client whose requests fail after `deadline`.
    pub fn new(deadline: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(deadline));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            deadline,
        }
    }

    /// Sends `method url` with `body` (none: an empty body); `content_type` is set
    /// when there is a body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<HttpResponse> {
        let mut request = Request::builder().method(method.clone()).uri(url);
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header(hyper::header::CONTENT_TYPE, content_type);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .with_context(|| format!("invalid request {method} {url}"))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(HttpResponse {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(self.deadline, exchange)
            .await
            .with_context(|| format!("{method} {url}: no answer within {:?}", self.deadline))?
            .with_context(|| format!("{method} {url} failed"))
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<HttpResponse> {
        let bytes = serde_json::to_vec(body).expect("JSON values serialise");
        self.send(Method::POST, url, Some(("application/json", bytes)))
            .await
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> anyhow::Result<HttpResponse> {
        self.send(Method::GET, url, None).await
    }
}
