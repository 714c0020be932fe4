"""dida's Python SDK: write a dida operator as one Python function.

A dida operator is one step of an application chain: the worker calls it with the
execution's metadata, the client's input and the previous operator's output, and it
returns its own output or fails. Operators run sandboxed as WebAssembly components;
``dida build`` turns a directory holding ``app.py`` into one with componentize-py,
over the same WIT world (``wit/operator.wit``) as the Rust SDK.

``app.py`` defines ``run``::

    import dida

    def run(ctx: dida.Context, input: str, previous: str | None) -> str:
        record = ctx.read(input)
        count = int(record.value) + 1 if record else 1
        ctx.write(input, str(count))
        ctx.info(f"{input} is now {count}")
        return str(count)

What the worker guarantees, in every language alike:

- **Consistency.** Within one execution, a read (without a version) of a key that
  this or an earlier operator of the execution already read or wrote returns exactly
  that version; ``Context.read_latest`` is the one exception, for compare-and-swap
  retry loops.
- **Isolation.** Every invocation runs in a fresh instance: module globals set while
  running do not survive to the next call (those set at import time are in the
  snapshot ``dida build`` takes, and are the same in every call).
- **Limits.** CPU, memory and wall time are bounded; exceeding one, or raising any
  exception out of ``run``, fails only this execution, with the exception's message
  (``OperatorError``'s alone, any other's after its type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import meta as _meta
from wit_world.imports import storage as _storage
from wit_world.imports import types as _types

__all__ = [
    "Context",
    "Meta",
    "OperatorError",
    "Record",
    "StorageError",
    "Version",
]


@dataclass(frozen=True, order=True)
class Version:
    """A record version: ``number`` orders a key's versions, ``replica`` (the storage
    node that made it) breaks ties. Compares in that order; prints as ``N.R``."""

    number: int
    replica: int

    def __str__(self) -> str:
        return f"{self.number}.{self.replica}"

    @staticmethod
    def parse(text: str) -> "Version":
        """Parses the ``N.R`` form ``str`` prints, for example a version an operator
        stored, to pass it to ``Context.read(key, version=...)``. Raises ValueError."""
        number, dot, replica = text.partition(".")
        if not dot or not number.isdigit() or not replica.isdigit():
            raise ValueError(f"not a version (expected NUMBER.REPLICA): {text!r}")
        return Version(int(number), int(replica))

    @staticmethod
    def _from_wit(v: _types.Version) -> "Version":
        return Version(v.number, v.replica)

    def _to_wit(self) -> _types.Version:
        return _types.Version(number=self.number, replica=self.replica)


@dataclass(frozen=True)
class Record:
    """One version of one key, as a read returns it."""

    key: str
    version: Version
    value: str

    @staticmethod
    def _from_wit(r: Optional[_types.StoredRecord]) -> Optional["Record"]:
        if r is None:
            return None
        return Record(r.key, Version._from_wit(r.version), r.value)


@dataclass(frozen=True)
class Meta:
    """The execution's metadata as the worker handed it over."""

    id: str
    """Unique id the scheduler gave the execution: the same for every operator of
    the chain, different for every execution (handy as a per-execution key)."""
    order: int
    """Position of this operator in the chain, 0 for the first."""
    entries: dict[str, str]
    """User metadata entries set by earlier operators. ``Context.meta_get`` also
    sees the entries this operator set itself."""


class OperatorError(Exception):
    """Fails the execution with exactly this message, as ``Err(message)`` does in
    Rust: for the failures an operator expects (unknown item, out of stock). Any
    other exception fails it too, with its type before the message
    (``ValueError: ...``), as Python prints it."""


class StorageError(Exception):
    """A storage call failed: no replica of the key answered, or a version the
    execution depends on was discarded. Errors the platform cannot recover from fail
    the execution even if the operator catches this, so the usual reaction is to let
    it propagate."""


def _storage_call(call: Callable, *args):
    try:
        return call(*args)
    except Err as e:
        raise StorageError(str(e.value)) from None


class Context:
    """What an operator can do besides computing: storage, metadata and logging.
    ``run`` receives one per invocation."""

    def __init__(self, meta: Meta):
        self.meta = meta

    # Storage.
    def read(self, key: str, version: Optional[Version] = None) -> Optional[Record]:
        """The version of ``key`` this execution sees (its pin, or the newest), or
        exactly ``version``; None when there is none."""
        wit_version = version._to_wit() if version is not None else None
        return Record._from_wit(_storage_call(_storage.read, key, wit_version))

    def read_latest(self, key: str) -> Optional[Record]:
        """The newest version of ``key`` any reachable replica holds, replacing this
        execution's pin of it. For the re-read after a lost ``update_if_value_is``."""
        return Record._from_wit(_storage_call(_storage.read_latest, key))

    def write(self, key: str, value: str) -> Version:
        """Writes a new version of ``key`` and returns it."""
        return Version._from_wit(_storage_call(_storage.write, key, value))

    def update_if_value_is(self, key: str, old: str, new: str) -> Optional[Version]:
        """Compare-and-swap: writes ``new`` only if ``key``'s newest value is ``old``.
        Returns the new version, or None when the comparison failed."""
        v = _storage_call(_storage.update_if_value_is, key, old, new)
        return Version._from_wit(v) if v is not None else None

    # Metadata.
    def meta_get(self, name: str) -> Optional[str]:
        """The metadata entry ``name``, including entries this operator set."""
        return _meta.get(name)

    def meta_set(self, name: str, value: str) -> None:
        """Sets metadata entry ``name`` for this and every later operator."""
        _meta.set(name, value)

    # Logging, through the worker's logs, tagged with the execution and operator.
    def trace(self, message: str) -> None:
        _log.log(_log.Level.TRACE, str(message))

    def debug(self, message: str) -> None:
        _log.log(_log.Level.DEBUG, str(message))

    def info(self, message: str) -> None:
        _log.log(_log.Level.INFO, str(message))

    def warn(self, message: str) -> None:
        _log.log(_log.Level.WARN, str(message))

    def error(self, message: str) -> None:
        _log.log(_log.Level.ERROR, str(message))
