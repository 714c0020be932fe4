// @ts-check
/**
 * UpdateAndChainOperator, the course's sample operator, in JavaScript: compares the
 * input key's value with the previous operator's output and sets it to "success"
 * when they match, then tries the same comparison again to set "failure" (which
 * must fail: the value is "success" now). Returns "end".
 */

/** @type {import("#dida").Run} */
export function run(ctx, input, previous) {
  const expected = previous ?? "";
  ctx.updateIfValueIs(input, expected, "success");
  ctx.updateIfValueIs(input, expected, "failure");
  return "end";
}
