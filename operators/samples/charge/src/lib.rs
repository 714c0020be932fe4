//! `ChargeOperator`, step 2 of the shop example (the input is an item id).
//!
//! Reads the item's price from key `price:<item>` and adds it to key `revenue` with
//! a compare-and-swap, retried a bounded number of times when another execution
//! charged at the same moment, so no charge is ever lost. The first attempt reads
//! `revenue` with `read`; a retry re-reads it with `read_latest`, because `read`
//! would return the version this execution pinned on its first read (SPEC §4) — the
//! very value the lost compare-and-swap was compared with. `revenue` must be seeded
//! (for example with `0`) before the first order: a compare-and-swap never matches
//! a key without a value, and a blind first write could lose a concurrent charge.
//!
//! Leaves metadata entry `price` (the amount charged) for the next step.

// The crate is named after the operator class so that cargo emits `ChargeOperator.wasm`.
#![allow(non_snake_case)]

use dida_sdk::{Context, Operator};

/// How many times a lost compare-and-swap is retried before giving up.
const MAX_ATTEMPTS: u32 = 16;

/// The key accumulating the shop's revenue.
const REVENUE: &str = "revenue";

/// See the crate documentation.
pub struct ChargeOperator;

fn parse_amount(key: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("key {key:?} holds {value:?}, not an amount"))
}

impl Operator for ChargeOperator {
    fn run(ctx: &mut Context, item: &str, _previous: Option<&str>) -> Result<String, String> {
        let price_key = format!("price:{item}");
        let price_record = ctx
            .read(&price_key)?
            .ok_or_else(|| format!("no price for item {item:?}: key {price_key:?} has no value"))?;
        let price = parse_amount(&price_key, &price_record.value)?;
        for attempt in 1..=MAX_ATTEMPTS {
            // After a lost compare-and-swap, `read` would return the pinned, stale value.
            let revenue = if attempt == 1 {
                ctx.read(REVENUE)?
            } else {
                ctx.read_latest(REVENUE)?
            };
            let revenue = revenue.ok_or_else(|| {
                format!("key {REVENUE:?} has no value: seed it (for example with 0) before taking orders")
            })?;
            let total = parse_amount(REVENUE, &revenue.value)?
                .checked_add(price)
                .ok_or_else(|| format!("key {REVENUE:?} would overflow"))?
                .to_string();
            if ctx
                .update_if_value_is(REVENUE, &revenue.value, &total)?
                .is_some()
            {
                ctx.meta_set("price", &price.to_string());
                return Ok(format!("charged {price} for {item}"));
            }
            ctx.debug(format!("revenue changed concurrently (attempt {attempt})"));
        }
        Err(format!(
            "could not charge {item}: the revenue changed concurrently {MAX_ATTEMPTS} times in a row"
        ))
    }
}

dida_sdk::export_operator!(ChargeOperator);
