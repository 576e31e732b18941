"""``Redactor``'s cheap paths (issue 12): what it skips must never let a secret through, and what it remembers
stays bounded however many tokens a process streams."""

from __future__ import annotations

import pytest

from genstudio_async import _constants as C
from genstudio_async._redact import Redactor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab", "ab…"),  # a secret as short as the text: no length skip may drop it
        ("[ab]", "[ab…]"),
        ("eyJabcd.efgh.ijkl", "eyJabc…"),  # the shortest JWT shape, 17 characters
        ("Bearer x", "Bearer x…"),  # the shortest bearer value, 8 characters (a short one shows 2 characters)
        ("bEaReR\tsecret-value1", "bEaReR\tsecret…"),  # any case, any space
        ("authorization=t", "authorization=t…"),  # the shortest token parameter, 15 characters
        ("?AUTHORIZATION=tokentokentoken&x=1", "?AUTHORIZATION=tokent…&x=1"),
    ],
)
def test_the_shortest_secrets_of_every_shape_are_still_masked(text: str, expected: str) -> None:
    assert Redactor(["ab"] if text.strip("[]") == "ab" else [])(text) == expected


def test_text_that_holds_no_secret_comes_back_as_it_was() -> None:
    redact = Redactor(["sk-live-0123456789abcdef"])
    for text in ("", "7", "-12", "KSampler", "a plain error message from the worker", "é" * 40):
        assert redact(text) == text
        assert redact.excerpt(text) == text


def test_a_token_added_is_masked_in_an_excerpt_of_a_single_string() -> None:
    redact = Redactor()
    token = "opaque-token-" + "z" * 40
    redact.add(token)
    kept = redact.excerpt(f"worker echoed {token}")
    assert token not in kept and kept.startswith("worker echoed opaque")
    long = redact.excerpt("x" * (C.ERROR_BODY_MAX_STRING_CHARS + 50) + token)
    assert token not in long and len(long) <= C.ERROR_BODY_MAX_STRING_CHARS + 1


def test_adding_many_tokens_without_redacting_keeps_only_the_remembered_ones() -> None:
    """A client that streams ten thousand tasks and never logs adds ten thousand tokens: the ones looked for one by
    one must stay bounded (they grew with every token ever added, each add scanning them all)."""
    redact = Redactor(["sk-pinned-key-0123456789"])
    tokens = [f"opaque-token-{index:05d}-{'y' * 40}" for index in range(3 * C.MAX_REMEMBERED_SECRETS)]
    for token in tokens:
        redact.add(token)
    assert len(redact._added) <= C.MAX_REMEMBERED_SECRETS
    for token in (tokens[-C.MAX_REMEMBERED_SECRETS], tokens[-1]):
        assert token not in redact(f"[{token}]")


def test_a_remembered_field_name_is_masked_again_once_a_new_secret_is_learnt() -> None:
    from genstudio_async._redact import Redactor

    token = "tok-0123456789abcdef0123"
    redactor = Redactor(["sk-the-api-key-0123456789"])
    name = f"echo-{token}"
    assert redactor.name(name) == name  # not a secret yet: kept, and remembered
    redactor.add(token)
    assert token not in redactor.name(name)
    assert redactor.name("progress_extra") == "progress_extra"
