"""Text from a server, made safe to show on a terminal or in a log line.

A terminal acts on some characters instead of showing them: ESC starts a sequence that can retitle the window,
clear the screen or move the cursor to overwrite a line; C1 controls (U+009B is a CSI on some terminals) do the
same; bidi controls reorder what is shown ("Trojan Source"). ``printable`` shows each of them escaped
(``\\x1b``), never acted on, never silently dropped. The CLI writes everything through it, and the SDK's own
stderr log handler (``GENSTUDIO_LOG``, ``--debug``) formats every record through it.
"""

from __future__ import annotations

import re
from typing import Final

# The line and paragraph separators, and Unicode's Bidi_Control characters (embeddings, overrides, isolates, marks).
BIDI_AND_SEPARATORS: Final = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{BIDI_AND_SEPARATORS}]")
_CONTROLS_AND_NEWLINE = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_AND_SEPARATORS}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character a terminal would act on shown escaped: ``\\x1b``, ``\\x9b``, ``\\u202e``.

    ``newlines``: keep line breaks (the command's own multi-line messages); else ``\\n`` is escaped too, so
    text from a server cannot start a line of its own that looks like the command's.
    """
    return (_CONTROLS if newlines else _CONTROLS_AND_NEWLINE).sub(_escape, text)
