//! `ReserveStockOperator`, step 1 of the shop example (`ReserveStockOperator 0`,
//! `ChargeOperator 1`, `ConfirmOrderOperator 2`; the input is an item id).
//!
//! Takes one unit of stock of the item: key `stock:<item>` holds the units left, and
//! the operator decrements it with a compare-and-swap, so two concurrent orders can
//! never both take the last unit. If another execution changed the stock between
//! the read and the swap, it reads again and retries, a bounded number of times. The
//! first attempt reads with `read`; a retry re-reads with `read_latest`, because
//! `read` would return the version this execution pinned on its first read (SPEC §4)
//! — the very value the lost compare-and-swap was compared with.
//! Fails with `out of stock: <item>` when no unit is left, and with a clear error
//! when the item is unknown (the key has no value).
//!
//! Leaves metadata entries `item` and `stock_left` for the later steps.

// The crate is named after the operator class so that cargo emits `ReserveStockOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// How many times a lost compare-and-swap is retried before giving up. Each attempt
/// is two storage calls; a bound keeps a hot item from holding an execution forever.
const MAX_ATTEMPTS: u32 = 16;

/// See the crate documentation.
pub struct ReserveStockOperator;

impl Operator for ReserveStockOperator {
    fn run(ctx: &mut Context, item: &str, _previous: Option<&str>) -> Result<String, String> {
        let key = format!("stock:{item}");
        for attempt in 1..=MAX_ATTEMPTS {
            // After a lost compare-and-swap, `read` would return the pinned, stale value.
            let record = if attempt == 1 {
                ctx.read(&key)?
            } else {
                ctx.read_latest(&key)?
            };
            let record =
                record.ok_or_else(|| format!("unknown item {item:?}: key {key:?} has no value"))?;
            let units: u64 = record.value.trim().parse().map_err(|_| {
                format!(
                    "key {key:?} holds {:?}, not a number of units",
                    record.value
                )
            })?;
            if units == 0 {
                return Err(format!("out of stock: {item}"));
            }
            let left = (units - 1).to_string();
            if ctx
                .update_if_value_is(&key, &record.value, &left)?
                .is_some()
            {
                ctx.meta_set("item", item);
                ctx.meta_set("stock_left", &left);
                return Ok(format!("reserved {item} ({left} left)"));
            }
            ctx.debug(format!(
                "stock of {item} changed concurrently (attempt {attempt})"
            ));
        }
        Err(format!(
            "could not reserve {item}: its stock changed concurrently {MAX_ATTEMPTS} times in a row"
        ))
    }
}

dida_sdk::export_operator!(ReserveStockOperator);
