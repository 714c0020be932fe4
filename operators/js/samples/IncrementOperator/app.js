// @ts-check
/**
 * IncrementOperator, the course's sample operator, in JavaScript: reads the key
 * named by the execution id (a missing key counts as 0), adds 1, writes the result
 * back and returns it. Twice in one chain it returns 1 then 2: the second read sees
 * exactly the version the first wrote.
 */

import { OperatorError } from "#dida";

/** @type {import("#dida").Run} */
export function run(ctx, input, previous) {
  const key = ctx.meta.id;
  const record = ctx.read(key);
  const text = record ? record.value.trim() : "0";
  if (!/^[+-]?[0-9]+$/.test(text) || BigInt(text) < -(2n ** 63n) || BigInt(text) >= 2n ** 63n) {
    throw new OperatorError(
      `key ${JSON.stringify(key)} holds ${JSON.stringify(record?.value)}, which is not an integer`,
    );
  }
  const next = BigInt(text) + 1n;
  if (next >= 2n ** 63n) {
    throw new OperatorError(`key ${JSON.stringify(key)} overflowed`);
  }
  ctx.write(key, String(next));
  return String(next);
}
