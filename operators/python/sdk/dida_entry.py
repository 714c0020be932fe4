"""The component's entry point, which ``dida build`` hands to componentize-py: it
exports the operator world's ``run`` and calls the ``run`` function of the
operator's ``app.py``, turning what that raises or returns wrongly into the error
that fails the execution, with the guest's own message."""

import traceback

import wit_world
from componentize_py_types import Err

import dida

try:
    import app
except ModuleNotFoundError as e:
    if e.name != "app":
        raise
    raise SystemExit("dida: the operator's directory has no app.py") from None

if not callable(getattr(app, "run", None)):
    raise SystemExit("dida: app.py defines no function run(ctx, input, previous)")


class WitWorld(wit_world.WitWorld):
    def run(self, meta, input, previous_output):
        ctx = dida.Context(dida.Meta(meta.id, meta.order, dict(meta.entries)))
        try:
            output = app.run(ctx, input, previous_output)
        except dida.OperatorError as e:
            raise Err(str(e)) from None
        except Exception as e:
            # The exception's type and message, as Python prints them last.
            raise Err("".join(traceback.format_exception_only(e)).strip()) from None
        if not isinstance(output, str):
            raise Err(f"run returned {type(output).__name__}, not str")
        return output
