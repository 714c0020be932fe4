//! `ReadOperator`: reads key `input` and returns `value@N.R` (the value and the
//! version read), or `none` if the key has no value. With `WriteOperator` it makes
//! the consistency guarantees of SPEC §4 visible in an execution's outputs.

// The crate is named after the operator class so that cargo emits `ReadOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct ReadOperator;

impl Operator for ReadOperator {
    fn run(ctx: &mut Context, input: &str, _previous: Option<&str>) -> Result<String, String> {
        Ok(match ctx.read(input)? {
            Some(record) => format!("{}@{}", record.value, record.version),
            None => "none".to_string(),
        })
    }
}

dida_sdk::export_operator!(ReadOperator);
