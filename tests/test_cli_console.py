"""What the command shows of a server's text: never a control sequence the terminal would act on.

A task's ``errMsg`` here retitles the window (OSC), clears the screen (CSI), carries a C1 CSI (U+009B), a bidi
override (U+202E), rich markup and a line break followed by a fake "all tasks succeeded". The commands run
installed, in subprocesses, against an emulator whose tasks fail with that message; what they print must show
it escaped (``\\x1b``), on the line it belongs to, and ``--json`` must give the exact text back.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from genstudio_async._cli.console import Console, json_text
from genstudio_async._logs import PrintableFormatter
from genstudio_async._text import printable
from genstudio_async.emulator import Emulator, Faults
from tests.cli_support import T2I, Answer, command_env, fake_service, genstudio, one_error_line

HOSTILE = (
    "\x1b]0;owned\x07\x1b[2J\x9b31mred\u202eevil\u2066 [red]markup[/] [link=https://evil.test]link[/link]"
    "\nall tasks succeeded\rok"
)
ACTED_ON = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\r")  # none of these may reach a terminal raw
SHOWN = r"\x1b]0;owned\x07\x1b[2J\x9b31mred\u202eevil\u2066 [red]markup[/] [link=https://evil.test]link[/link]"


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"workers": 2, "steps": 2, "step_seconds": 0.01, "faults": Faults(fail_tasks=HOSTILE)}


def assert_neutralised(text: str) -> None:
    for character in ACTED_ON:
        assert character not in text, (character, text)
    assert not any(line.startswith("all tasks succeeded") for line in text.splitlines()), text


async def test_status_and_its_json_show_a_hostile_errmsg_escaped(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    async with genstudio_emulator.client() as client:
        submission = await client.submit(T2I)
        await genstudio_emulator.wait_status(submission.prompt_id, 4)
    env = command_env(genstudio_emulator, dev_mode=False)
    table = await genstudio("status", submission.prompt_id, cwd=tmp_path, env=env)
    as_json = await genstudio("status", submission.prompt_id, "--json", cwd=tmp_path, env=env)
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    assert_neutralised(table.stdout)
    [row] = [line for line in table.stdout.splitlines() if line.startswith(submission.prompt_id)]
    assert SHOWN + r"\nall tasks succeeded\rok" in row  # all of it, visibly, on its own row
    assert_neutralised(as_json.stdout.replace("\n", " "))  # JSON's own line breaks are fine
    assert "\\u009b" in as_json.stdout and "\\u202e" in as_json.stdout
    [document] = as_json.json()
    assert document["error"] == HOSTILE  # the escapes are JSON's: a script reads the exact text


async def test_a_failed_run_reports_the_errmsg_on_one_escaped_line(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    env = command_env(genstudio_emulator, dev_mode=False)
    plain, drawn = (
        await genstudio("run", T2I, cwd=tmp_path, env=env),
        await genstudio("run", T2I, cwd=tmp_path, env={**env, "FORCE_COLOR": "1", "COLUMNS": "300"}),
    )
    assert plain.returncode == 1 and drawn.returncode == 1
    error = one_error_line(plain.stderr)  # the message's own line break did not start a line
    assert re.fullmatch(rf"task cft-\S+ failed: {re.escape(SHOWN)} all tasks succeeded ok", error), error
    assert_neutralised(plain.stdout + plain.stderr)
    # The progress lines (plain) and the rich bar: the state shows the errMsg escaped, markup as text.
    assert f"  failed: {SHOWN}" in plain.stdout
    for sequence in ("\x1b]0;owned", "\x1b[2J", "\x07", "\x9b", "\u202e", "\u2066"):  # rich draws with ESC [ and CR
        assert sequence not in drawn.stdout + drawn.stderr, sequence
    without_colours = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.stdout)  # rich's own colour and cursor codes
    assert f"failed: {SHOWN}" in without_colours  # markup shown as text, not as red or a link


async def test_a_batch_shows_a_hostile_errmsg_escaped_in_its_lines_and_summary(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"workflow_id": T2I, "id": "fox"}) + "\n", encoding="utf-8")
    done = await genstudio(
        "batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=command_env(genstudio_emulator, dev_mode=False)
    )
    assert done.returncode == 1
    assert_neutralised(done.stdout + done.stderr)
    assert re.search(rf"^\[1/1\] FAILED fox: task cft-\S+ failed: {re.escape(SHOWN)}", done.stdout, re.M)
    [row] = [line for line in done.stdout.splitlines() if line.startswith("fox ")]
    assert SHOWN in row


async def test_a_hostile_business_error_msg_is_one_escaped_line(tmp_path: Path) -> None:
    def respond(method: str, path: str, body: bytes) -> Answer:
        return 200, "application/json", json.dumps({"code": 10001, "msg": HOSTILE, "data": None}).encode()

    async with fake_service(respond) as base_url:
        env = command_env(dev_mode=False, GENSTUDIO_API_KEY="sk-test-0123456789", GENSTUDIO_BASE_URL=base_url)
        done = await genstudio("status", "cft-x", cwd=tmp_path, env=env)
    assert done.returncode == 3
    assert_neutralised(done.stdout + done.stderr)
    assert SHOWN in one_error_line(done.stderr)


# --- the mechanism, in-process --------------------------------------------------------------------------------


def test_printable_escapes_what_a_terminal_acts_on_and_keeps_the_rest() -> None:
    assert printable("a\x1b[2Jb\x07\x9b\u202e\u2069\u200f\x7f\tc") == r"a\x1b[2Jb\x07\x9b\u202e\u2069\u200f\x7f\tc"
    assert printable("one\ntwo") == r"one\ntwo" and printable("one\ntwo", newlines=True) == "one\ntwo"
    assert printable("狐狸 émoji ✓ [red] \\x1b") == "狐狸 émoji ✓ [red] \\x1b"  # text, brackets, backslashes stay


def test_json_output_escapes_c1_and_bidi_controls_and_round_trips() -> None:
    document = {"error": "x\x9by\u202ez\x85\u2028 狐狸", "ok": "\x1b"}
    text = json_text(document)
    assert all(character not in text for character in "\x9b\u202e\x85\u2028\x1b")
    assert "狐狸" in text and json.loads(text) == document


def test_every_console_write_is_printable(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(stdout=out, stderr=err)
    console.line("line \x1b[2J")
    console.note("note \x9b")
    console.warn("warn \u202e")
    console.error("error \x07\nsecond line of ours")
    console.table(["id", "state"], [["cft-1", "failed: \x1b]0;t\x07\nfake row"]])
    assert_neutralised(out.getvalue() + err.getvalue())
    assert err.getvalue().splitlines()[-1] == "second line of ours"  # the command's own line breaks stay
    assert out.getvalue().splitlines()[-1] == r"cft-1  failed: \x1b]0;t\x07\nfake row"
    monkeypatch.setenv("FORCE_COLOR", "1")
    drawn = io.StringIO()
    Console(stdout=drawn).table(["id"], [["\x1b[2J[red]x[/]"]])
    assert r"\x1b[2J[red]x[/]" in drawn.getvalue()


def test_the_debug_log_escapes_what_a_server_sent() -> None:
    record = logging.LogRecord("genstudio_async", logging.DEBUG, __file__, 1, "frame %r", ("\x1b[2J\nfake",), None)
    line = PrintableFormatter("%(message)s").format(record)
    assert line == r"frame '\x1b[2J\nfake'"
    record = logging.LogRecord("genstudio_async", logging.DEBUG, __file__, 1, "skipped: %s", ("\x1b[2J\nfake",), None)
    assert PrintableFormatter("%(message)s").format(record) == r"skipped: \x1b[2J\nfake"
