//! `UpdateAndChainOperator`, the course's sample operator (SPEC §3.4):
//! `update_if_value_is(input, previous_output, "success")`, then
//! `update_if_value_is(input, previous_output, "failure")`; returns `end`.
//!
//! If the key held the previous output, the first update applies and the second
//! cannot (the value is now `success`): the key ends as `success`. The first
//! operator of a chain has no previous output; it compares with the empty string.

// The crate is named after the operator class so that cargo emits `UpdateAndChainOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct UpdateAndChainOperator;

impl Operator for UpdateAndChainOperator {
    fn run(ctx: &mut Context, input: &str, previous: Option<&str>) -> Result<String, String> {
        let previous = previous.unwrap_or("");
        ctx.update_if_value_is(input, previous, "success")?;
        ctx.update_if_value_is(input, previous, "failure")?;
        Ok("end".to_string())
    }
}

dida_sdk::export_operator!(UpdateAndChainOperator);
