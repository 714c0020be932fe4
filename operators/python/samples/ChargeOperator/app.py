"""ChargeOperator, the shop's second step, in Python: adds the item's price
(`price:<item>`) to `revenue` with a compare-and-swap, retrying on the newest value
when another order got there first. Leaves `price` in the metadata."""

import dida

MAX_ATTEMPTS = 16
REVENUE = "revenue"


def parse_amount(key: str, value: str) -> int:
    amount = value.strip()
    if not (amount.isascii() and amount.isdigit()) or int(amount) >= 2**64:
        raise dida.OperatorError(f"key {key!r} holds {value!r}, not an amount")
    return int(amount)


def run(ctx: dida.Context, item: str, previous: str | None) -> str:
    price_key = f"price:{item}"
    price_record = ctx.read(price_key)
    if price_record is None:
        raise dida.OperatorError(f"no price for item {item!r}: key {price_key!r} has no value")
    price = parse_amount(price_key, price_record.value)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        revenue = ctx.read(REVENUE) if attempt == 1 else ctx.read_latest(REVENUE)
        if revenue is None:
            raise dida.OperatorError(
                f"key {REVENUE!r} has no value: seed it (for example with 0) before taking orders"
            )
        total = parse_amount(REVENUE, revenue.value) + price
        if total >= 2**64:
            raise dida.OperatorError(f"key {REVENUE!r} would overflow")
        if ctx.update_if_value_is(REVENUE, revenue.value, str(total)) is not None:
            ctx.meta_set("price", str(price))
            return f"charged {price} for {item}"
        ctx.debug(f"revenue changed concurrently (attempt {attempt})")
    raise dida.OperatorError(
        f"could not charge {item}: the revenue changed concurrently {MAX_ATTEMPTS} times in a row"
    )
