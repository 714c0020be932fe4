//! `WriteOperator`: writes key `input` with the previous output (or
//! `written-by-<execution id>` when it is the first operator) and returns
//! `value@N.R` of the version it wrote.

// The crate is named after the operator class so that cargo emits `WriteOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct WriteOperator;

impl Operator for WriteOperator {
    fn run(ctx: &mut Context, input: &str, previous: Option<&str>) -> Result<String, String> {
        let value = match previous {
            Some(previous) => previous.to_string(),
            None => format!("written-by-{}", ctx.meta().id),
        };
        let version = ctx.write(input, &value)?;
        Ok(format!("{value}@{version}"))
    }
}

dida_sdk::export_operator!(WriteOperator);
