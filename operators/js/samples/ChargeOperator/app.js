// @ts-check
/**
 * ChargeOperator, the shop's second step, in JavaScript: adds the item's price
 * (`price:<item>`) to `revenue` with a compare-and-swap, retrying on the newest
 * value when another order got there first. Leaves `price` in the metadata.
 */

import { OperatorError } from "#dida";

const MAX_ATTEMPTS = 16;
const REVENUE = "revenue";
const U64_LIMIT = 2n ** 64n;

/**
 * The amount (a u64) `value`, stored under `key`, holds.
 * @param {string} key
 * @param {string} value
 * @returns {bigint}
 */
function parseAmount(key, value) {
  const amount = value.trim();
  if (!/^[0-9]+$/.test(amount) || BigInt(amount) >= U64_LIMIT) {
    throw new OperatorError(
      `key ${JSON.stringify(key)} holds ${JSON.stringify(value)}, not an amount`,
    );
  }
  return BigInt(amount);
}

/** @type {import("#dida").Run} */
export function run(ctx, item, previous) {
  const priceKey = `price:${item}`;
  const priceRecord = ctx.read(priceKey);
  if (priceRecord === undefined) {
    throw new OperatorError(
      `no price for item ${JSON.stringify(item)}: key ${JSON.stringify(priceKey)} has no value`,
    );
  }
  const price = parseAmount(priceKey, priceRecord.value);
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    // After a lost compare-and-swap, `read` would return the pinned, stale value.
    const revenue = attempt === 1 ? ctx.read(REVENUE) : ctx.readLatest(REVENUE);
    if (revenue === undefined) {
      throw new OperatorError(
        `key ${JSON.stringify(REVENUE)} has no value: seed it (for example with 0) before taking orders`,
      );
    }
    const total = parseAmount(REVENUE, revenue.value) + price;
    if (total >= U64_LIMIT) {
      throw new OperatorError(`key ${JSON.stringify(REVENUE)} would overflow`);
    }
    if (ctx.updateIfValueIs(REVENUE, revenue.value, String(total)) !== undefined) {
      ctx.metaSet("price", String(price));
      return `charged ${price} for ${item}`;
    }
    ctx.debug(`revenue changed concurrently (attempt ${attempt})`);
  }
  throw new OperatorError(
    `could not charge ${item}: the revenue changed concurrently ${MAX_ATTEMPTS} times in a row`,
  );
}
