"""AddOperator, the course's sample operator, in Python: reads the key named by the
input, writes its integer value plus one (or "int_conversion_failed" when it holds
no integer) back under the input, and returns it. It also reads the key input + 1,
so that a chain's later operators see that key at the version read here."""

import dida

I64_MAX = 2**63 - 1


def parse_i64(text: str) -> int | None:
    """The integer `text` holds (surrounding spaces allowed), as Rust's i64 parser
    reads it: an optional sign and decimal digits, within 64 bits."""
    text = text.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit():
        return None
    n = int(text)
    return n if -(2**63) <= n <= I64_MAX else None


def run(ctx: dida.Context, input: str, previous: str | None) -> str:
    record = ctx.read(input)
    n = parse_i64(record.value) if record else None
    output = str(n + 1) if n is not None and n < I64_MAX else "int_conversion_failed"
    key = parse_i64(input)
    if key is not None and key < I64_MAX:
        ctx.read(str(key + 1))
    ctx.write(input, output)
    return output
