//! `AddOperator`, the course's sample operator (SPEC §3.4), with the exact
//! behaviour course scripts expect:
//!
//! 1. reads key `input` and parses its value as an integer; the output is that
//!    integer + 1, or `int_conversion_failed` when the value is not an integer (or
//!    the key has no value);
//! 2. reads key `input + 1` (the input parsed as an integer, plus one), if the input
//!    is an integer — the read only pins that key's version for the execution;
//! 3. writes the output to key `input`;
//! 4. returns the output.

// The crate is named after the operator class so that cargo emits `AddOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct AddOperator;

impl Operator for AddOperator {
    fn run(ctx: &mut Context, input: &str, _previous: Option<&str>) -> Result<String, String> {
        let stored = ctx.read(input)?;
        let output = stored
            .and_then(|record| record.value.trim().parse::<i64>().ok())
            .and_then(|n| n.checked_add(1))
            .map_or_else(|| "int_conversion_failed".to_string(), |n| n.to_string());
        if let Some(next) = input
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_add(1))
        {
            ctx.read(&next.to_string())?;
        }
        ctx.write(input, &output)?;
        Ok(output)
    }
}

dida_sdk::export_operator!(AddOperator);
