// The component's entry point, which `dida build` bundles with the operator's
// `app.js` and hands to componentize-js: it exports the operator world's `run` and
// calls the `run` function `app.js` exports, turning what that throws or returns
// wrongly into the error that fails the execution, with the guest's own message.
//
// `#dida-app` is the operator's app.js and `#dida` the SDK (dida.js): the build's
// bundler resolves both. The `dida:operator/...` modules are the WIT imports, which
// componentize-js provides.

import * as storage from "dida:operator/storage@0.1.0";
import * as meta from "dida:operator/meta@0.1.0";
import { log } from "dida:operator/log@0.1.0";

import { Context, Meta, OperatorError, typeName } from "#dida";
import * as app from "#dida-app";

// Checked when the module is first evaluated, which is during `dida build`: the build
// fails with this message rather than every execution.
if (typeof app.run !== "function") {
  throw new Error("dida: app.js exports no function run(ctx, input, previous)");
}

const host = Object.freeze({ storage, meta, log });

// The component is built without outgoing HTTP (workers give operators no network),
// where StarlingMonkey's fetch would trap; this one fails the way fetch fails.
globalThis.fetch = async function fetch() {
  throw new TypeError("fetch: a dida operator has no network access");
};

/**
 * The message an exception `e` thrown out of `run` fails the execution with: an
 * OperatorError's message alone, any other Error's name and message as JavaScript
 * prints them (`TypeError: x is undefined`), the engine's running out of memory as
 * such, and for anything else thrown, what it was.
 * @param {unknown} e
 * @returns {string}
 */
function failure(e) {
  if (e instanceof OperatorError) return e.message;
  // What SpiderMonkey throws when the memory cannot grow any more.
  if (e === "out of memory") return "out of memory: the operator reached its memory limit";
  if (e instanceof Error) {
    return e.message === "" ? String(e.name) : `${e.name}: ${e.message}`;
  }
  let shown;
  try {
    shown = typeof e === "string" ? JSON.stringify(e) : String(e);
  } catch {
    shown = "(unprintable)";
  }
  return `run threw ${typeName(e)}, not an Error: ${shown}`;
}

/**
 * The world's export. The binding componentize-js generates turns a returned
 * `{tag: "err", val}` into the `result`'s error, and anything else into its `ok`.
 * @param {{id: string, order: number, entries: [string, string][]}} execution
 * @param {string} input
 * @param {string | undefined} previousOutput
 */
export async function run(execution, input, previousOutput) {
  const ctx = new Context(new Meta(execution.id, execution.order, execution.entries), host);
  let output;
  try {
    // `await`: `run` may be an async function (storage calls are synchronous anyway).
    output = await app.run(ctx, input, previousOutput ?? undefined);
  } catch (e) {
    return { tag: "err", val: failure(e) };
  }
  if (typeof output !== "string") {
    return { tag: "err", val: `run returned ${typeName(output)}, not string` };
  }
  return { tag: "ok", val: output };
}
