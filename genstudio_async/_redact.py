"""Keeping secrets out of logs, reprs and error messages.

The API key and every ``prompt_token`` are credentials. Wherever text may reach a log line, a ``repr`` or an
exception message, it goes through :func:`mask` (one secret) or :class:`Redactor` (any text that may hold
one) first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ._constants import MAX_REMEMBERED_SECRETS, SECRET_VISIBLE_PREFIX

_JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
_BEARER_PATTERN = re.compile(r"(Bearer\s+)([^\s)\]}\"',;]+)", re.IGNORECASE)
_TOKEN_PARAM_PATTERN = re.compile(r"(authorization=)([^&\s\"']+)", re.IGNORECASE)
# How deep ``Redactor.scrub`` follows nested JSON; deeper parts of a hostile body are dropped.
_MAX_SCRUB_DEPTH = 32


def mask(secret: str | None) -> str:
    """A short, recognisable prefix of a secret followed by an ellipsis: ``sk-abc…``."""
    if not secret:
        return "<none>"
    visible = secret[:SECRET_VISIBLE_PREFIX] if len(secret) > 2 * SECRET_VISIBLE_PREFIX else secret[:2]
    return f"{visible}…"


class Redactor:
    """Replaces known secrets, and anything shaped like a JWT or a bearer credential, in free text."""

    def __init__(self, secrets: Iterable[str | None] = (), *, remember: int = MAX_REMEMBERED_SECRETS) -> None:
        self._pinned = {secret for secret in secrets if secret}  # the API key: for the client's lifetime
        # prompt_tokens: the most recent few only. An older token is still caught by the JWT pattern below.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._ordered: list[str] | None = None

    def add(self, secret: str | None) -> None:
        if not secret or secret in self._pinned:
            return
        self._recent[secret] = None
        self._recent.move_to_end(secret)
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
        self._ordered = None

    def _longest_first(self) -> list[str]:
        # Longest first: a secret may begin with another (two keys sharing a prefix), and masking the shorter one
        # first would leave the rest of the longer one in the clear.
        if self._ordered is None:
            self._ordered = sorted((*self._pinned, *self._recent), key=len, reverse=True)
        return self._ordered

    def __call__(self, text: str) -> str:
        for secret in self._longest_first():
            if secret in text:
                text = text.replace(secret, mask(secret))
        text = _JWT_PATTERN.sub(lambda match: mask(match.group(0)), text)
        text = _BEARER_PATTERN.sub(lambda match: match.group(1) + mask(match.group(2)), text)
        return _TOKEN_PARAM_PATTERN.sub(lambda match: match.group(1) + mask(match.group(2)), text)

    def scrub(self, value: Any, *, depth: int = 0) -> Any:
        """``value`` (parsed JSON: dicts, lists, strings...) with every string redacted, keys included.

        For what a server sent that an error will carry (an error envelope, a body): a server may echo the key or
        a token anywhere in it. Nesting past a sane depth is cut (the value then holds only what was redacted).
        """
        if isinstance(value, str):
            return self(value)
        if depth >= _MAX_SCRUB_DEPTH:
            return None
        if isinstance(value, Mapping):
            return {self(str(key)): self.scrub(item, depth=depth + 1) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(item, depth=depth + 1) for item in value]
        return value


redact_shapes = Redactor()
"""Redacts the shapes of secrets (JWTs, bearer values, ``authorization=`` parameters) in any text."""
