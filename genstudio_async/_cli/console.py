"""Where the command writes, and whether it draws with rich or prints plain lines.

Results and progress go to stdout, errors and warnings to stderr. Progress bars and tables are drawn with rich
(the ``cli`` extra) when stdout is a terminal (or ``FORCE_COLOR`` is set); otherwise every update is a plain line,
readable in a log file or a CI console. rich is imported only when it is about to draw: a missing rich means
plain lines and one note saying how to get the bars.

Whatever is written goes through ``printable`` first: the command shows text from the service (an ``errMsg``,
an error's ``msg``, ids), and a terminal acts on some characters instead of showing them (ESC starts a sequence
that can retitle the window, clear the screen or move the cursor to overwrite a line). Those are shown escaped
(``\x1b``), never acted on, never silently dropped. ``--json`` output escapes them as JSON (``\u009b``).

And through the console's ``redact`` too: it holds the command's secrets (the API key, every prompt token the
command was given or got), so a server that echoes one back (an ``errMsg`` quoting the token) never gets it shown
whole, whichever path the text takes to the terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from .._redact import Redactor
from .._text import BIDI_AND_SEPARATORS, printable

if TYPE_CHECKING:
    from rich.console import Console as RichConsole

RICH_MISSING = "progress bars and tables need rich: pip install 'genstudio-async[cli]' (showing plain lines)"

# In JSON, json.dumps escapes the C0 controls itself; these it leaves raw with ensure_ascii=False.
_JSON_RAW_CONTROLS = re.compile(f"[\x7f-\x9f{BIDI_AND_SEPARATORS}]")


def json_text(document: Any, *, one_line: bool = False) -> str:
    """``document`` as indented JSON, with the controls ``json.dumps`` leaves raw escaped as ``\\uXXXX``.

    Outside strings JSON is ASCII, so every such character is inside a string, where the escape means the same.
    ``one_line``: compact, on one line (a JSON-lines record: a line break inside a string is escaped as ``\\n``,
    U+2028 and U+2029 as ``\\u2028``, so no reader splits it).
    """
    if one_line:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(document, ensure_ascii=False, indent=2)
    return _JSON_RAW_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def stdout_is_terminal() -> bool:
    """True when stdout is a terminal, or ``FORCE_COLOR`` asks to draw as if it were (rich's convention)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


class Console:
    """The command's output. ``pretty`` is decided once: rich when drawing to a terminal and rich is installed.

    ``quiet`` (``--json``) keeps stdout for the one JSON document: lines and progress are not shown.
    """

    def __init__(self, *, quiet: bool = False, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.quiet = quiet
        self.redact = Redactor()  # the command's secrets (``add`` each): masked in everything written
        self._rich: RichConsole | None = None
        self.pretty = False
        if not quiet and stdout_is_terminal():
            try:
                from rich.console import Console as RichConsole
            except ImportError:
                self.note(RICH_MISSING)
            else:
                self._rich = RichConsole(file=self.out, highlight=False, emoji=False)
                self.pretty = True

    @property
    def rich(self) -> RichConsole:
        """The rich console (only when ``pretty``)."""
        assert self._rich is not None, "rich is used only when the console is pretty"
        return self._rich

    # --- writing -------------------------------------------------------------------------------------------
    def printable(self, text: str, *, newlines: bool = False) -> str:
        """``text`` as it may be shown: no secret (``redact``), no control character acted on (``printable``)."""
        return printable(self.redact(text), newlines=newlines)

    def line(self, text: str = "") -> None:
        """One line of normal output on stdout (not shown with ``--json``); a line break in it is escaped."""
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.print(self.printable(text), markup=False, highlight=False, soft_wrap=True)
        else:
            _write(self.out, self.printable(text))

    def json(self, document: Any) -> None:
        """The one JSON document of ``--json``, on stdout."""
        _write(self.out, json_text(self._redacted(document)))

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self._redacted(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._redacted(item) for item in value]
        return value

    def note(self, text: str) -> None:
        """Something the user should know, on stderr (shown even with ``--json``)."""
        _write(self.err, self.printable(f"genstudio: {text}", newlines=True))

    def warn(self, text: str) -> None:
        _write(self.err, self.printable(f"genstudio: warning: {text}", newlines=True))

    def error(self, text: str) -> None:
        _write(self.err, self.printable(f"genstudio: error: {text}", newlines=True))

    # --- tables --------------------------------------------------------------------------------------------
    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
        """A table: rich's when pretty, else aligned plain columns."""
        if self.quiet:
            return
        if self._rich is not None:
            from rich.table import Table
            from rich.text import Text

            table = Table(*headers, title=title, title_justify="left", show_lines=False)
            for row in rows:
                table.add_row(*(Text(self.printable(cell)) for cell in row))  # Text: a "[x]" in a name: no markup
            self._rich.print(table)
            return
        if title:
            _write(self.out, title)
        rows = [[self.printable(cell) for cell in row] for row in rows]
        widths = [len(header) for header in headers]
        for row in rows:
            widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
        for cells in (headers, *rows):
            text = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            _write(self.out, text.rstrip())


def _write(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()
