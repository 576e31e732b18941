"""The service-neutral helpers of ``_services/_base.py``."""

from __future__ import annotations

import sys

import pytest

from genstudio_async import Submission
from genstudio_async._exceptions import InvalidInputError
from genstudio_async._services._base import is_plain_id
from genstudio_async._services.genstudio import GenStudio


def test_a_plain_id_is_told_apart_exactly_as_a_test_of_every_character_would() -> None:
    """The fast test (``isprintable`` and no space) against the one it replaced, for every code point."""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        slow = not (char.isspace() or not char.isprintable())
        assert is_plain_id(f"id{char}x") is slow, hex(code)


@pytest.mark.parametrize("bad", ["a b", "a\tb", "a\nb", "a\u00a0b", "a\u2028b", "a\x1bb", "a\u202eb", "a\x00b"])
def test_an_id_with_a_space_or_a_control_character_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        GenStudio.task_id(bad)
    with pytest.raises(ValueError, match="prompt_id"):
        Submission(prompt_id=bad, prompt_token="t")


def test_a_plain_id_is_kept_as_it_is() -> None:
    assert GenStudio.task_id("c7-abc_DEF.123") == "c7-abc_DEF.123"
    assert Submission(prompt_id="任务-1", prompt_token="t").prompt_id == "任务-1"
