// @ts-check
/**
 * AddOperator, the course's sample operator, in JavaScript: reads the key named by
 * the input, writes its integer value plus one (or "int_conversion_failed" when it
 * holds no integer) back under the input, and returns it. It also reads the key
 * input + 1, so that a chain's later operators see that key at the version read
 * here.
 */

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/**
 * The integer `text` holds (surrounding spaces allowed), as Rust's i64 parser reads
 * it: an optional sign and decimal digits, within 64 bits; undefined otherwise.
 * @param {string} text
 * @returns {bigint | undefined}
 */
export function parseI64(text) {
  const trimmed = text.trim();
  if (!/^[+-]?[0-9]+$/.test(trimmed)) return undefined;
  const n = BigInt(trimmed);
  return n >= I64_MIN && n <= I64_MAX ? n : undefined;
}

/** @type {import("#dida").Run} */
export function run(ctx, input, previous) {
  const record = ctx.read(input);
  const n = record ? parseI64(record.value) : undefined;
  const output = n !== undefined && n < I64_MAX ? String(n + 1n) : "int_conversion_failed";
  const key = parseI64(input);
  if (key !== undefined && key < I64_MAX) {
    ctx.read(String(key + 1n));
  }
  ctx.write(input, output);
  return output;
}
