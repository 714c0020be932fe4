// @ts-check
/**
 * ConfirmOrderOperator, the shop's last step, in JavaScript: records the order under
 * `order:<execution id>` and returns its confirmation, with the price and stock the
 * earlier steps left in the metadata.
 */

import { OperatorError } from "#dida";

/** @type {import("#dida").Run} */
export function run(ctx, item, previous) {
  const price = ctx.metaGet("price");
  if (price === undefined) {
    throw new OperatorError(
      "metadata entry `price` is not set: ChargeOperator must run before ConfirmOrderOperator",
    );
  }
  const stockLeft = ctx.metaGet("stock_left") ?? "?";
  const key = `order:${ctx.meta.id}`;
  const version = ctx.write(key, `confirmed ${item}`);
  ctx.metaSet("order", key);
  ctx.info(`confirmed ${key}@${version}`);
  return (
    `order ${ctx.meta.id} confirmed: 1 x ${item} for ${price} (${stockLeft} left), ` +
    `recorded as ${key}@${version}`
  );
}
