//! `IncrementOperator`, the course's sample operator (SPEC §3.4): reads the key
//! named by the execution id (`meta.id`; a missing key counts as 0), adds 1, writes
//! the result back and returns it. Running it twice in one chain returns 1 then 2:
//! the second read sees exactly the version the first operator wrote (SPEC §4).

// The crate is named after the operator class so that cargo emits `IncrementOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct IncrementOperator;

impl Operator for IncrementOperator {
    fn run(ctx: &mut Context, _input: &str, _previous: Option<&str>) -> Result<String, String> {
        let key = ctx.meta().id.as_str();
        let current = match ctx.read(key)? {
            None => 0,
            Some(record) => record.value.trim().parse::<i64>().map_err(|_| {
                format!(
                    "key {key:?} holds {:?}, which is not an integer",
                    record.value
                )
            })?,
        };
        let next = current
            .checked_add(1)
            .ok_or_else(|| format!("key {key:?} overflowed"))?
            .to_string();
        ctx.write(key, &next)?;
        Ok(next)
    }
}

dida_sdk::export_operator!(IncrementOperator);
