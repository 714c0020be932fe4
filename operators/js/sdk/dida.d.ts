// Types of dida's JavaScript SDK (dida.js), for editors and `tsc --checkJs`.
//
// An operator's app.js imports the SDK as `#dida`; with the package.json `dida new`
// writes (`"imports": {"#dida": "./build/dida-sdk/dida.js"}`), TypeScript finds these
// declarations beside dida.js. Type `run` with JSDoc:
//
//     // @ts-check
//     import { OperatorError } from "#dida";
//
//     /** @type {import("#dida").Run} */
//     export function run(ctx, input, previous) { ... }

/**
 * The function app.js exports as `run`: called once per execution, in a fresh
 * instance, with the execution's context, the client's input and the previous
 * operator's output (undefined for the first operator of a chain). Its result is the
 * operator's output; it may be async (a Promise of the output). Throwing fails the
 * execution: an OperatorError with exactly its message, any other Error with
 * `Name: message`; returning anything but a string fails it with
 * `run returned <type>, not string`.
 */
export type Run = (
  ctx: Context,
  input: string,
  previous: string | undefined,
) => string | Promise<string>;

/**
 * A record version: `number` orders a key's versions, `replica` (the storage node
 * that made it) breaks ties. Prints, and serialises to JSON, as `N.R`.
 */
export class Version {
  /** Wraps `number` to 64 bits and `replica` to 32, as the WIT types are. */
  constructor(number: bigint | number, replica: number);
  /** The version number, a u64: a BigInt, so that every value is exact. */
  readonly number: bigint;
  /** The storage node that made the version, a u32. */
  readonly replica: number;
  /**
   * Parses the `N.R` form `toString` prints, for example a version an operator
   * stored, to pass it to `Context.read(key, version)`. Throws a SyntaxError.
   */
  static parse(text: string): Version;
  /** Orders versions as storage does, for `Array.prototype.sort`. */
  static compare(a: Version, b: Version): number;
  /** Whether `other` is the same version. */
  equals(other: Version): boolean;
  /** `N.R`. */
  toString(): string;
  /** `N.R`: `JSON.stringify` cannot write a BigInt. */
  toJSON(): string;
}

/** One version of one key, as a read returns it. */
export class Record {
  constructor(key: string, version: Version, value: string);
  readonly key: string;
  readonly version: Version;
  readonly value: string;
}

/** The execution's metadata as the worker handed it over. */
export class Meta {
  constructor(id: string, order: number, entries: Iterable<[string, string]>);
  /**
   * Unique id the scheduler gave the execution: the same for every operator of the
   * chain, different for every execution (handy as a per-execution key).
   */
  readonly id: string;
  /** Position of this operator in the chain, 0 for the first. */
  readonly order: number;
  /**
   * User metadata entries set by earlier operators, by name (an object without a
   * prototype). `Context.metaGet` also sees the entries this operator set itself.
   */
  readonly entries: { readonly [name: string]: string };
}

/**
 * Fails the execution with exactly this message, as `Err(message)` does in Rust: for
 * the failures an operator expects (unknown item, out of stock). Any other exception
 * fails it too, with its name before the message (`TypeError: ...`).
 */
export class OperatorError extends Error {
  constructor(message: string, options?: ErrorOptions);
  readonly name: "OperatorError";
}

/**
 * A storage call failed: no replica of the key answered, or a version the execution
 * depends on was discarded. Errors the platform cannot recover from fail the
 * execution even if the operator catches this, so the usual reaction is to let it
 * propagate.
 */
export class StorageError extends Error {
  constructor(message: string, options?: ErrorOptions);
  readonly name: "StorageError";
}

/** A version as the WIT interface passes it. */
export interface WitVersion {
  number: bigint;
  replica: number;
}

/** A record as the WIT interface passes it. */
export interface WitRecord {
  key: string;
  version: WitVersion;
  value: string;
}

/**
 * The worker's side of a Context: the WIT imports `dida:operator/storage`, `meta`
 * and `log`, as componentize-js binds them (a WIT `option` is a value or undefined;
 * a `result`'s error is thrown as an error whose `payload` is the message). The
 * entry module builds every Context over these; a test on the host may build one
 * over an in-memory fake.
 */
export interface Host {
  storage: {
    read(key: string, version: WitVersion | undefined): WitRecord | undefined;
    write(key: string, value: string): WitVersion;
    updateIfValueIs(key: string, oldValue: string, newValue: string): WitVersion | undefined;
    readLatest(key: string): WitRecord | undefined;
  };
  meta: {
    get(name: string): string | undefined;
    set(name: string, value: string): void;
  };
  log(level: "trace" | "debug" | "info" | "warn" | "error", message: string): void;
}

/**
 * What an operator can do besides computing: storage, metadata and logging. `run`
 * receives one per invocation.
 */
export class Context {
  /** Made by the entry module over the worker's imports, or by a test over a fake. */
  constructor(meta: Meta, host: Host);
  /** The execution's metadata. */
  readonly meta: Meta;

  /**
   * The version of `key` this execution sees (its pin, or the newest), or exactly
   * `version`; undefined when there is none. Throws StorageError.
   */
  read(key: string, version?: Version): Record | undefined;
  /**
   * The newest version of `key` any reachable replica holds, replacing this
   * execution's pin of it. For the re-read after a lost `updateIfValueIs`.
   */
  readLatest(key: string): Record | undefined;
  /** Writes a new version of `key` and returns it. Throws StorageError. */
  write(key: string, value: string): Version;
  /**
   * Compare-and-swap: writes `newValue` only if `key`'s newest value is `oldValue`.
   * Returns the new version, or undefined when the comparison failed.
   */
  updateIfValueIs(key: string, oldValue: string, newValue: string): Version | undefined;

  /** The metadata entry `name`, including entries this operator set. */
  metaGet(name: string): string | undefined;
  /** Sets metadata entry `name` for this and every later operator. */
  metaSet(name: string, value: string): void;

  /**
   * Logging through the worker's logs, tagged with the execution and operator
   * (`console.log` and `console.error` reach the execution's logs too).
   */
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
}

/**
 * The name of `value`'s type as dida's error messages give it: `undefined`, `null`,
 * `number`, or an object's class (`Object`, `Array`, `Promise`).
 */
export function typeName(value: unknown): string;
