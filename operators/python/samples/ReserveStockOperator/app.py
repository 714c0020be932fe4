"""ReserveStockOperator, the shop's first step, in Python: takes one unit of the
item named by the input from `stock:<item>` with a compare-and-swap, retrying on the
newest value when another order got there first. Fails when the item is unknown or
out of stock. Leaves `item` and `stock_left` in the metadata."""

import dida

MAX_ATTEMPTS = 16


def run(ctx: dida.Context, item: str, previous: str | None) -> str:
    key = f"stock:{item}"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        record = ctx.read(key) if attempt == 1 else ctx.read_latest(key)
        if record is None:
            raise dida.OperatorError(f"unknown item {item!r}: key {key!r} has no value")
        units = record.value.strip()
        if not (units.isascii() and units.isdigit()):
            raise dida.OperatorError(f"key {key!r} holds {record.value!r}, not a number of units")
        if int(units) == 0:
            raise dida.OperatorError(f"out of stock: {item}")
        left = str(int(units) - 1)
        if ctx.update_if_value_is(key, record.value, left) is not None:
            ctx.meta_set("item", item)
            ctx.meta_set("stock_left", left)
            return f"reserved {item} ({left} left)"
        ctx.debug(f"stock of {item} changed concurrently (attempt {attempt})")
    raise dida.OperatorError(
        f"could not reserve {item}: its stock changed concurrently {MAX_ATTEMPTS} times in a row"
    )
