"""ConfirmOrderOperator, the shop's last step, in Python: records the order under
`order:<execution id>` and returns its confirmation, with the price and stock the
earlier steps left in the metadata."""

import dida


def run(ctx: dida.Context, item: str, previous: str | None) -> str:
    price = ctx.meta_get("price")
    if price is None:
        raise dida.OperatorError(
            "metadata entry `price` is not set: ChargeOperator must run before ConfirmOrderOperator"
        )
    stock_left = ctx.meta_get("stock_left")
    if stock_left is None:
        stock_left = "?"
    key = f"order:{ctx.meta.id}"
    version = ctx.write(key, f"confirmed {item}")
    ctx.meta_set("order", key)
    ctx.info(f"confirmed {key}@{version}")
    return (
        f"order {ctx.meta.id} confirmed: 1 x {item} for {price} ({stock_left} left), "
        f"recorded as {key}@{version}"
    )
