// @ts-check
/**
 * ReserveStockOperator, the shop's first step, in JavaScript: takes one unit of the
 * item named by the input from `stock:<item>` with a compare-and-swap, retrying on
 * the newest value when another order got there first. Fails when the item is
 * unknown or out of stock. Leaves `item` and `stock_left` in the metadata.
 */

import { OperatorError } from "#dida";

const MAX_ATTEMPTS = 16;

/** @type {import("#dida").Run} */
export function run(ctx, item, previous) {
  const key = `stock:${item}`;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    // After a lost compare-and-swap, `read` would return the pinned, stale value.
    const record = attempt === 1 ? ctx.read(key) : ctx.readLatest(key);
    if (record === undefined) {
      throw new OperatorError(
        `unknown item ${JSON.stringify(item)}: key ${JSON.stringify(key)} has no value`,
      );
    }
    const units = record.value.trim();
    if (!/^[0-9]+$/.test(units) || BigInt(units) >= 2n ** 64n) {
      throw new OperatorError(
        `key ${JSON.stringify(key)} holds ${JSON.stringify(record.value)}, not a number of units`,
      );
    }
    if (BigInt(units) === 0n) {
      throw new OperatorError(`out of stock: ${item}`);
    }
    const left = String(BigInt(units) - 1n);
    if (ctx.updateIfValueIs(key, record.value, left) !== undefined) {
      ctx.metaSet("item", item);
      ctx.metaSet("stock_left", left);
      return `reserved ${item} (${left} left)`;
    }
    ctx.debug(`stock of ${item} changed concurrently (attempt ${attempt})`);
  }
  throw new OperatorError(
    `could not reserve ${item}: its stock changed concurrently ${MAX_ATTEMPTS} times in a row`,
  );
}
