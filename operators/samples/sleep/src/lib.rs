//! `SleepOperator`: waits the number of milliseconds its input names (at most
//! [`MAX_SLEEP_MS`]), then returns its input. No storage, no CPU: it stands for
//! the common serverless function that spends its time waiting on an outside
//! service (an HTTP API, a database), which is what a worker's `--concurrency`
//! slots bound. `dida bench elastic` uses it so that the capacity of a cluster is
//! set by its number of workers rather than by the cores of the machine it runs on.
//!
//! An input that is not a whole number of milliseconds, or one above the bound,
//! fails the execution with an error saying so (the worker's wall-time limit would
//! stop a longer wait anyway).

// The crate is named after the operator class so that cargo emits `SleepOperator.wasm`.
#![allow(non_snake_case)]

use std::time::Duration;

use dida_sdk::{Context, Operator};

/// Longest wait accepted, in milliseconds (10 s: below the worker's default
/// wall-time limit of 30 s).
pub const MAX_SLEEP_MS: u64 = 10_000;

/// See the crate documentation.
pub struct SleepOperator;

impl Operator for SleepOperator {
    fn run(_ctx: &mut Context, input: &str, _previous: Option<&str>) -> Result<String, String> {
        let ms: u64 = input.trim().parse().map_err(|_| {
            format!("SleepOperator: the input must be a whole number of milliseconds, not {input:?}")
        })?;
        if ms > MAX_SLEEP_MS {
            return Err(format!(
                "SleepOperator: {ms} ms is longer than the {MAX_SLEEP_MS} ms it waits at most"
            ));
        }
        std::thread::sleep(Duration::from_millis(ms));
        Ok(input.to_string())
    }
}

dida_sdk::export_operator!(SleepOperator);
