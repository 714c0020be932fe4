// Unit tests of the SDK on the host, over a fake of the worker's imports:
// node --test operators/js/sdk/dida.test.js (crates/dida/tests/js_operators.rs runs it).
import assert from "node:assert/strict";
import { test } from "node:test";

import { Context, Meta, OperatorError, Record, StorageError, Version, typeName } from "./dida.js";

/** What componentize-js throws for a WIT `result`'s error. */
class ComponentError extends Error {
  /** @param {string} payload */
  constructor(payload) {
    super(payload);
    Object.defineProperty(this, "payload", { value: payload });
  }
}

/** A Context over an in-memory fake of the WIT imports, and the lines it logged. */
function fake() {
  /** @type {[string, string][]} */
  const logs = [];
  const entries = new Map();
  /** @type {import("./dida.d.ts").Host} */
  const host = {
    storage: {
      read(key) {
        if (key === "unreachable") throw new ComponentError("no replica of the key answered");
        return key === "k" ? { key, version: { number: 3n, replica: 1 }, value: "v" } : undefined;
      },
      readLatest: () => undefined,
      write: () => ({ number: 4n, replica: 2 }),
      updateIfValueIs: (key, oldValue) => (oldValue === "v" ? { number: 5n, replica: 1 } : undefined),
    },
    meta: { get: (name) => entries.get(name), set: (name, value) => void entries.set(name, value) },
    log: (level, message) => void logs.push([level, message]),
  };
  const meta = new Meta("exec-1", 0, [["a", "b"], ["toString", "x"]]);
  return { ctx: new Context(meta, host), logs };
}

test("storage calls map the WIT types", () => {
  const { ctx } = fake();
  const record = ctx.read("k");
  assert.ok(record instanceof Record);
  assert.equal(String(record.version), "3.1");
  assert.equal(JSON.stringify(record), '{"key":"k","version":"3.1","value":"v"}');
  assert.equal(ctx.read("missing"), undefined);
  assert.equal(ctx.readLatest("k"), undefined);
  assert.equal(String(ctx.write("k", "x")), "4.2");
  assert.equal(ctx.updateIfValueIs("k", "w", "x"), undefined);
  assert.equal(String(ctx.updateIfValueIs("k", "v", "x")), "5.1");
});

test("a storage error is a StorageError with the host's message", () => {
  const { ctx } = fake();
  assert.throws(
    () => ctx.read("unreachable"),
    (e) => e instanceof StorageError && String(e) === "StorageError: no replica of the key answered",
  );
});

test("arguments the WIT types cannot carry are refused by name", () => {
  const { ctx } = fake();
  assert.throws(() => ctx.write("k", /** @type {any} */ (5)), /write: value must be a string, not number/);
  assert.throws(() => ctx.read("k", /** @type {any} */ ("1.2")), /read: version must be a Version, not string/);
});

test("metadata and logging", () => {
  const { ctx, logs } = fake();
  assert.equal(ctx.meta.id, "exec-1");
  assert.equal(ctx.meta.entries.a, "b");
  assert.equal(ctx.meta.entries.toString, "x");
  ctx.metaSet("price", "3");
  assert.equal(ctx.metaGet("price"), "3");
  assert.equal(ctx.metaGet("other"), undefined);
  ctx.info(42);
  ctx.error("bad");
  assert.deepEqual(logs, [["info", "42"], ["error", "bad"]]);
});

test("versions parse, print and compare as storage orders them", () => {
  const max = "18446744073709551615.4294967295";
  assert.equal(String(Version.parse(max)), max);
  for (const bad of ["1", "1.", ".1", "a.b", "-1.2", " 1.2", "18446744073709551616.0", "1.4294967296"]) {
    assert.throws(() => Version.parse(bad), SyntaxError, bad);
  }
  assert.ok(Version.compare(new Version(1, 2), new Version(1, 3)) < 0);
  assert.ok(Version.compare(new Version(2, 0), new Version(1, 3)) > 0);
  assert.ok(new Version(2n, 1).equals(Version.parse("2.1")));
});

test("errors print as JavaScript prints them", () => {
  assert.equal(String(new OperatorError("out of stock: pen")), "OperatorError: out of stock: pen");
  assert.deepEqual(
    [undefined, null, 1, "s", {}, [], Promise.resolve(), Object.create(null)].map(typeName),
    ["undefined", "null", "number", "string", "Object", "Array", "Promise", "object"],
  );
});
