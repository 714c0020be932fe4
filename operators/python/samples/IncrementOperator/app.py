"""IncrementOperator, the course's sample operator: reads the key named by the
execution id (a missing key counts as 0), adds 1, writes the result back and
returns it. Twice in one chain it returns 1 then 2: the second read sees exactly the
version the first wrote."""

import dida


def run(ctx: dida.Context, input: str, previous: str | None) -> str:
    key = ctx.meta.id
    record = ctx.read(key)
    try:
        current = int(record.value.strip()) if record else 0
    except ValueError:
        raise dida.OperatorError(f"key {key!r} holds {record.value!r}, which is not an integer")
    ctx.write(key, str(current + 1))
    return str(current + 1)
