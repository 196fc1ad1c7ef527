"""Text from files shown on a terminal: control characters (escape sequences, carriage returns, bells) in stored
text (a failure reason, a log line) are shown escaped (``\\x1b``), so a file can neither rewrite the screen nor
hide what precedes it."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` with every control character but tab and newline written as a visible ``\\xNN`` escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
