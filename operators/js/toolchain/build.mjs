// How `dida build` builds a JavaScript operator (crates/dida/src/js_operator.rs runs
// this with Node.js, from the toolchain directory it installed this package in, so
// that the imports below resolve to the pinned versions):
//
//   node build.mjs --app DIR/app.js --sdk DIR/build/dida-sdk --out DIR/build/NAME.wasm
//
// 1. rolldown bundles the SDK's entry module (dida_entry.js) with the operator's
//    app.js and whatever that imports (its own modules, packages from its
//    node_modules) into one ES module, `dida-sdk/bundle.js`: `#dida` resolves to the
//    SDK's dida.js and `#dida-app` to app.js, the WIT imports stay imports.
// 2. componentize-js embeds that module in StarlingMonkey (SpiderMonkey) as a
//    component of the operator world (`dida-sdk/wit`), evaluated once at build time
//    (a Wizer snapshot). Of the WASI features it adds by default, outgoing HTTP
//    (`http`, and `fetch-event`, an incoming-HTTP export) is left out: workers do
//    not give operators the network, and would refuse a component importing it.

import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const [major, minor] = process.versions.node.split(".").map(Number);
// rolldown's own requirement.
if (major < 20 || (major === 20 && minor < 19) || major === 21 || (major === 22 && minor < 12)) {
  fail(`Node.js ${process.versions.node} cannot build operators: use 20.19 or later (22.12 on 22)`);
}

const { values } = parseArgs({
  options: {
    app: { type: "string" },
    sdk: { type: "string" },
    out: { type: "string" },
  },
});
if (!values.app || !values.sdk || !values.out) {
  fail("usage: node build.mjs --app APP_JS --sdk SDK_DIR --out COMPONENT");
}
const sdk = resolve(values.sdk);
const app = resolve(values.app);
const out = resolve(values.out);
const bundle = join(sdk, "bundle.js");

const { build } = await import("rolldown");
try {
  await build({
    input: join(sdk, "dida_entry.js"),
    // StarlingMonkey offers the web platform's APIs (fetch aside), not Node's.
    platform: "browser",
    external: [/^dida:operator\//],
    resolve: {
      alias: {
        "#dida": join(sdk, "dida.js"),
        "#dida-app": app,
      },
    },
    output: { file: bundle, format: "esm", sourcemap: false },
    logLevel: "warn",
  });
} catch (error) {
  fail(`could not bundle ${app}: ${error?.message ?? error}`);
}

const { componentize } = await import("@bytecodealliance/componentize-js");
await encodeStringsNatively();
// componentize-js shows the engine, at build time, the directory it is run from
// when the module is inside it: the SDK's directory, and nothing else of the disk.
process.chdir(sdk);
let component;
try {
  ({ component } = await componentize({
    sourcePath: bundle,
    witPath: join(sdk, "wit"),
    worldName: "operator",
    disableFeatures: ["http", "fetch-event"],
  }));
} catch (error) {
  fail(`could not build the component: ${error?.message ?? error}`);
}
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);

/**
 * Makes the bindings componentize-js generates pass strings to the host in native
 * code. As generated, they measure a string's UTF-8 length in a JavaScript loop over
 * its characters before encoding it with TextEncoder: in the engine's interpreter
 * that costs about 2,600 fuel units per character, so returning or writing 100 KiB
 * took 265 million (of the default budget of 2 billion) and a value of 750 KiB or
 * more could not be written at all. TextEncoder.encode does the same work in native
 * code (lone surrogates become U+FFFD in both).
 *
 * The bindings are made by the splicer module componentize.js imports; this wraps its
 * `spliceBindings` (the module instance is shared: same file, same URL) to replace
 * the one function. A componentize-js whose bindings lack it fails the build, so
 * that updating the toolchain cannot lose this silently.
 */
async function encodeStringsNatively() {
  const url = new URL(
    "../lib/spidermonkey-embedding-splicer.js",
    import.meta.resolve("@bytecodealliance/componentize-js"),
  );
  const { splicer } = await import(url.href);
  const splice = splicer.spliceBindings;
  const start = "function _utf8AllocateAndEncode(s, realloc, memory) {\n";
  const end = "\n  return res;\n}\n";
  const native = `function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== 'string') {
    throw new TypeError('expected a string, received [' + typeof s + ']');
  }
  if (s.length === 0) { return { ptr: 1, len: 0 }; }
  const bytes = TEXT_ENCODER_UTF8.encode(s);
  const ptr = realloc(0, 0, 1, bytes.length);
  new Uint8Array(memory.buffer, ptr, bytes.length).set(bytes);
  return { ptr, len: bytes.length };
}
`;
  splicer.spliceBindings = (...args) => {
    const spliced = splice(...args);
    const from = spliced.jsBindings.indexOf(start);
    const to = from < 0 ? -1 : spliced.jsBindings.indexOf(end, from);
    if (to < 0) {
      fail("componentize-js's bindings have no _utf8AllocateAndEncode to replace: see build.mjs");
    }
    spliced.jsBindings =
      spliced.jsBindings.slice(0, from) + native + spliced.jsBindings.slice(to + end.length);
    return spliced;
  };
}

/** @param {string} message */
function fail(message) {
  console.error(`dida build: ${message}`);
  process.exit(1);
}
