"""The one error type users see, and its helpers.

Every message names the field, the value and the rule: ``kv_heads=3 must divide heads=10``.
The CLI turns :class:`InputError` (and pydantic's ``ValidationError``) into that message and
exit code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input: ``field=value`` breaks ``rule``."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}={value!r} {rule}")


def closest(name: str, known: Iterable[str], n: int = 3) -> str:
    """A '; did you mean ...?' suffix naming the closest known names, or ''."""
    known = list(known)
    matches = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=n, cutoff=0.4)
    if not matches:
        return ""
    lower_to_name = {k.lower(): k for k in known}
    return "; did you mean " + " or ".join(repr(lower_to_name[m]) for m in matches) + "?"


def format_validation_error(exc: Exception) -> str:
    """One line per problem of a pydantic ``ValidationError``: field, value, rule."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    lines = []
    for err in errors():
        field = ".".join(str(p) for p in err.get("loc", ()))
        value = err.get("input")
        msg = err.get("msg", "")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if not field:
            lines.append(msg)
        elif isinstance(value, dict):
            lines.append(f"{field}: {msg}")
        else:
            lines.append(f"{field}={value!r}: {msg}")
    return "\n".join(lines)
