// dida's JavaScript SDK: write a dida operator as one JavaScript function.
//
// A dida operator is one step of an application chain: the worker calls it with the
// execution's metadata, the client's input and the previous operator's output, and
// it returns its own output or fails. Operators run sandboxed as WebAssembly
// components; `dida build` turns a directory holding `app.js` into one with
// componentize-js (SpiderMonkey), over the same WIT world (`wit/operator.wit`) as the
// Rust and Python SDKs.
//
// `app.js` exports `run`:
//
//     import { OperatorError } from "#dida";
//
//     /** @type {import("#dida").Run} */
//     export function run(ctx, input, previous) {
//       const record = ctx.read(input);
//       const count = record ? Number(record.value) + 1 : 1;
//       ctx.write(input, String(count));
//       ctx.info(`${input} is now ${count}`);
//       return String(count);
//     }
//
// `#dida` is this module: `dida build` resolves it to the copy it writes into
// `build/dida-sdk/`, and so does Node (for tests on the host) through the
// `"imports"` of the package.json `dida new` writes. Its types are in dida.d.ts.
//
// This module imports nothing from the worker: the entry module (dida_entry.js) hands
// the WIT imports to each Context it makes. So it loads in Node too, where a test can
// build a Context over a fake host, or use Version and OperatorError as they are.
//
// What the worker guarantees, in every language alike:
//
// - Consistency. Within one execution, a read (without a version) of a key that this
//   or an earlier operator of the execution already read or wrote returns exactly
//   that version; `Context.readLatest` is the one exception, for compare-and-swap
//   retry loops.
// - Isolation. Every invocation runs in a fresh instance: module variables changed
//   while running do not survive to the next call (those set when the module is
//   first evaluated are in the snapshot `dida build` takes, the same in every call).
// - Limits. CPU, memory and wall time are bounded; exceeding one, or throwing out of
//   `run`, fails only this execution, with the exception's message (an
//   OperatorError's alone, any other Error's after its name).

/**
 * A record version: `number` orders a key's versions, `replica` (the storage node
 * that made it) breaks ties. Prints, and serialises to JSON, as `N.R`.
 */
export class Version {
  /**
   * @param {bigint | number} number
   * @param {number} replica
   */
  constructor(number, replica) {
    /** The version number, a u64: a BigInt, so that every value is exact. */
    this.number = BigInt.asUintN(64, BigInt(number));
    /** The replica that made the version, a u32. */
    this.replica = replica >>> 0;
    Object.freeze(this);
  }

  /**
   * Parses the `N.R` form `toString` prints, for example a version an operator
   * stored, to pass it to `Context.read(key, version)`. Throws a SyntaxError.
   * @param {string} text
   * @returns {Version}
   */
  static parse(text) {
    const match = /^(\d+)\.(\d+)$/.exec(String(text));
    const number = match ? BigInt(match[1]) : -1n;
    const replica = match ? Number(match[2]) : -1;
    if (number < 0n || number >= 2n ** 64n || replica < 0 || replica >= 2 ** 32) {
      throw new SyntaxError(
        `not a version (expected NUMBER.REPLICA): ${JSON.stringify(String(text))}`,
      );
    }
    return new Version(number, replica);
  }

  /**
   * Orders versions as storage does: by number, then replica. Negative, zero or
   * positive, as `Array.prototype.sort` takes it: `versions.sort(Version.compare)`.
   * @param {Version} a
   * @param {Version} b
   * @returns {number}
   */
  static compare(a, b) {
    if (a.number !== b.number) return a.number < b.number ? -1 : 1;
    return a.replica - b.replica;
  }

  /**
   * Whether `other` is the same version.
   * @param {Version} other
   */
  equals(other) {
    return Version.compare(this, other) === 0;
  }

  toString() {
    return `${this.number}.${this.replica}`;
  }

  /** `JSON.stringify` cannot write a BigInt: a version is written as `"N.R"`. */
  toJSON() {
    return this.toString();
  }

  /** @param {{number: bigint, replica: number}} v */
  static _fromWit(v) {
    return new Version(v.number, v.replica);
  }

  _toWit() {
    return { number: this.number, replica: this.replica };
  }
}

/** One version of one key, as a read returns it. */
export class Record {
  /**
   * @param {string} key
   * @param {Version} version
   * @param {string} value
   */
  constructor(key, version, value) {
    this.key = key;
    this.version = version;
    this.value = value;
    Object.freeze(this);
  }

  /** @param {{key: string, version: {number: bigint, replica: number}, value: string} | undefined} r */
  static _fromWit(r) {
    return r === undefined || r === null
      ? undefined
      : new Record(r.key, Version._fromWit(r.version), r.value);
  }
}

/** The execution's metadata as the worker handed it over. */
export class Meta {
  /**
   * @param {string} id
   * @param {number} order
   * @param {Iterable<[string, string]>} entries
   */
  constructor(id, order, entries) {
    /**
     * Unique id the scheduler gave the execution: the same for every operator of the
     * chain, different for every execution (handy as a per-execution key).
     */
    this.id = id;
    /** Position of this operator in the chain, 0 for the first. */
    this.order = order;
    /**
     * User metadata entries set by earlier operators, by name (an object without a
     * prototype, so a name such as `toString` is only ever an entry).
     * `Context.metaGet` also sees the entries this operator set itself.
     * @type {{readonly [name: string]: string}}
     */
    this.entries = Object.freeze(Object.assign(Object.create(null), Object.fromEntries(entries)));
    Object.freeze(this);
  }
}

/**
 * Fails the execution with exactly this message, as `Err(message)` does in Rust: for
 * the failures an operator expects (unknown item, out of stock). Any other exception
 * fails it too, with its name before the message (`TypeError: ...`), as JavaScript
 * prints it.
 */
export class OperatorError extends Error {
  /**
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(message, options) {
    super(message, options);
    // Set here rather than taken from the class, whose name a bundler may change.
    this.name = "OperatorError";
  }
}

/**
 * A storage call failed: no replica of the key answered, or a version the execution
 * depends on was discarded. Errors the platform cannot recover from fail the
 * execution even if the operator catches this, so the usual reaction is to let it
 * propagate.
 */
export class StorageError extends Error {
  /**
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = "StorageError";
  }
}

/**
 * Calls the storage import `name` of `host`, turning its error (a value thrown with a
 * `payload`, as componentize-js throws a WIT `result`'s error) into a StorageError.
 * @param {any} host
 * @param {string} name
 * @param {any[]} args
 */
function storageCall(host, name, ...args) {
  try {
    return host.storage[name](...args);
  } catch (e) {
    if (e !== null && typeof e === "object" && Object.hasOwn(e, "payload")) {
      throw new StorageError(String(/** @type {any} */ (e).payload));
    }
    throw e;
  }
}

/**
 * Checks that argument `what` of `method` is a string: the WIT boundary takes nothing
 * else, and its own message would not say which argument was wrong.
 * @param {string} method
 * @param {string} what
 * @param {unknown} value
 */
function requireString(method, what, value) {
  if (typeof value !== "string") {
    throw new TypeError(`${method}: ${what} must be a string, not ${typeName(value)}`);
  }
}

/**
 * The name of `value`'s type as an error message gives it: `undefined`, `null`,
 * `number`, `string`, or an object's class (`Object`, `Array`, `Promise`).
 * @param {unknown} value
 * @returns {string}
 */
export function typeName(value) {
  if (value === null) return "null";
  if (typeof value === "object" || typeof value === "function") {
    const name = Object.getPrototypeOf(value)?.constructor?.name;
    return typeof name === "string" && name !== "" ? name : typeof value;
  }
  return typeof value;
}

/**
 * What an operator can do besides computing: storage, metadata and logging. `run`
 * receives one per invocation.
 */
export class Context {
  #host;

  /**
   * Made by the entry module over the worker's imports; a test on the host may make
   * one over a fake (see `Host` in dida.d.ts).
   * @param {Meta} meta
   * @param {any} host the WIT imports, `storage`, `meta` and `log` (`Host` in dida.d.ts)
   */
  constructor(meta, host) {
    /** The execution's metadata. */
    this.meta = meta;
    this.#host = host;
  }

  // Storage.

  /**
   * The version of `key` this execution sees (its pin, or the newest), or exactly
   * `version`; undefined when there is none.
   * @param {string} key
   * @param {Version} [version]
   * @returns {Record | undefined}
   */
  read(key, version) {
    requireString("read", "key", key);
    if (version !== undefined && !(version instanceof Version)) {
      throw new TypeError(`read: version must be a Version, not ${typeName(version)}`);
    }
    return Record._fromWit(storageCall(this.#host, "read", key, version?._toWit()));
  }

  /**
   * The newest version of `key` any reachable replica holds, replacing this
   * execution's pin of it. For the re-read after a lost `updateIfValueIs`.
   * @param {string} key
   * @returns {Record | undefined}
   */
  readLatest(key) {
    requireString("readLatest", "key", key);
    return Record._fromWit(storageCall(this.#host, "readLatest", key));
  }

  /**
   * Writes a new version of `key` and returns it.
   * @param {string} key
   * @param {string} value
   * @returns {Version}
   */
  write(key, value) {
    requireString("write", "key", key);
    requireString("write", "value", value);
    return Version._fromWit(storageCall(this.#host, "write", key, value));
  }

  /**
   * Compare-and-swap: writes `newValue` only if `key`'s newest value is `oldValue`.
   * Returns the new version, or undefined when the comparison failed.
   * @param {string} key
   * @param {string} oldValue
   * @param {string} newValue
   * @returns {Version | undefined}
   */
  updateIfValueIs(key, oldValue, newValue) {
    requireString("updateIfValueIs", "key", key);
    requireString("updateIfValueIs", "oldValue", oldValue);
    requireString("updateIfValueIs", "newValue", newValue);
    const v = storageCall(this.#host, "updateIfValueIs", key, oldValue, newValue);
    return v === undefined || v === null ? undefined : Version._fromWit(v);
  }

  // Metadata.

  /**
   * The metadata entry `name`, including entries this operator set; undefined when it
   * is not set.
   * @param {string} name
   * @returns {string | undefined}
   */
  metaGet(name) {
    requireString("metaGet", "name", name);
    return this.#host.meta.get(name) ?? undefined;
  }

  /**
   * Sets metadata entry `name` for this and every later operator.
   * @param {string} name
   * @param {string} value
   */
  metaSet(name, value) {
    requireString("metaSet", "name", name);
    requireString("metaSet", "value", value);
    this.#host.meta.set(name, value);
  }

  // Logging, through the worker's logs, tagged with the execution and operator.
  // (`console.log` and `console.error` go to the execution's logs too.)

  /** @param {unknown} message */
  trace(message) {
    this.#host.log("trace", String(message));
  }

  /** @param {unknown} message */
  debug(message) {
    this.#host.log("debug", String(message));
  }

  /** @param {unknown} message */
  info(message) {
    this.#host.log("info", String(message));
  }

  /** @param {unknown} message */
  warn(message) {
    this.#host.log("warn", String(message));
  }

  /** @param {unknown} message */
  error(message) {
    this.#host.log("error", String(message));
  }
}
