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
        super().__init__(f"{field}={_show(value)} {rule}")

    def __reduce__(self) -> tuple[type, tuple[str, object, str]]:
        # Pickle by the three fields, so the error crosses process boundaries
        # (``sweep --workers``) as itself rather than breaking the pool.
        return (type(self), (self.field, self.value, self.rule))


def _show(value: object) -> str:
    """A value on one line: repr, with line breaks escaped and long values cut."""
    text = repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= 200 else text[:197] + "..."


def one_line(text: str) -> str:
    """``text`` with its line breaks replaced, so a message is exactly one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def closest(name: str, known: Iterable[str], n: int = 3) -> str:
    """A '; did you mean ...?' suffix naming the closest known names, or ''."""
    known = list(known)
    matches = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=n, cutoff=0.4)
    if not matches:
        return ""
    lower_to_name = {k.lower(): k for k in known}
    return "; did you mean " + " or ".join(repr(lower_to_name[m]) for m in matches) + "?"


def format_validation_error(exc: Exception) -> str:
    """A pydantic ``ValidationError`` on one line: ``field=value rule``, problems joined by
    '; ' (the first names the field; later ones follow)."""
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
        elif msg.startswith("Input should be "):
            msg = "must be " + msg[len("Input should be "):]
        if not field:
            lines.append(msg)
        elif isinstance(value, dict):
            lines.append(f"{field} {msg}")
        else:
            lines.append(f"{field}={_show(value)} {msg}")
    return one_line("; ".join(lines))
