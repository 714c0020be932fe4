//! `ConfirmOrderOperator`, step 3 of the shop example (the input is an item id).
//!
//! Records the order under key `order:<execution id>` as `confirmed <item>`, sets
//! metadata entry `order` to that key, and returns a summary built from what the
//! earlier steps left in the metadata (`stock_left`, `price`). It fails if the
//! price is missing: the order would be confirmed without being charged.

// The crate is named after the operator class so that cargo emits `ConfirmOrderOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// See the crate documentation.
pub struct ConfirmOrderOperator;

impl Operator for ConfirmOrderOperator {
    fn run(ctx: &mut Context, item: &str, _previous: Option<&str>) -> Result<String, String> {
        let price = ctx.meta_get("price").ok_or(
            "metadata entry `price` is not set: ChargeOperator must run before ConfirmOrderOperator",
        )?;
        let stock_left = ctx
            .meta_get("stock_left")
            .unwrap_or_else(|| "?".to_string());
        let key = format!("order:{}", ctx.meta().id);
        let version = ctx.write(&key, &format!("confirmed {item}"))?;
        ctx.meta_set("order", &key);
        ctx.info(format!("confirmed {key}@{version}"));
        Ok(format!(
            "order {} confirmed: 1 x {item} for {price} ({stock_left} left), recorded as {key}@{version}",
            ctx.meta().id
        ))
    }
}

dida_sdk::export_operator!(ConfirmOrderOperator);
