//! `EchoOperator`, the no-op: returns the previous output if there is one, else the
//! input. No storage, no logging — benchmarks use it to measure the platform itself.

// The crate is named after the operator class so that cargo emits `EchoOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct EchoOperator;

impl Operator for EchoOperator {
    fn run(_ctx: &mut Context, input: &str, previous: Option<&str>) -> Result<String, String> {
        Ok(previous.unwrap_or(input).to_string())
    }
}

dida_sdk::export_operator!(EchoOperator);
