//! Helpers shared by the integration tests (each test file includes this module
//! with `mod support;`). Each test binary uses its own subset of them, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

/// The `dida` binary cargo built for these tests.
pub fn dida() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_dida"))
}

/// Polls `check` every 25 ms until it returns `Some`, failing the test after `limit`:
/// the tests wait for a condition, never for a guessed amount of time.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
