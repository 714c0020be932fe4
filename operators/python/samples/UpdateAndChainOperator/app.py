"""UpdateAndChainOperator, the course's sample operator, in Python: compares the
input key's value with the previous operator's output and sets it to "success"
when they match, then tries the same comparison again to set "failure" (which must
fail: the value is "success" now). Returns "end"."""

import dida


def run(ctx: dida.Context, input: str, previous: str | None) -> str:
    expected = previous or ""
    ctx.update_if_value_is(input, expected, "success")
    ctx.update_if_value_is(input, expected, "failure")
    return "end"
