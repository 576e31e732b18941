"""Keeping secrets out of logs, reprs and error messages.

The API key and every ``prompt_token`` are credentials. Wherever text may reach a log line, a ``repr`` or an
exception message, it goes through :func:`mask` (one secret) or :class:`Redactor` (any text that may hold
one) first. What a server sends is hostile in size as well: :meth:`Redactor.cut` and :meth:`Redactor.excerpt`
redact and keep only a bounded part of it, so a huge body costs no more than a small one.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import _constants as C

_JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
_BEARER_PATTERN = re.compile(r"(Bearer\s+)([^\s)\]}\"',;]+)", re.IGNORECASE)
_TOKEN_PARAM_PATTERN = re.compile(r"(authorization=)([^&\s\"']+)", re.IGNORECASE)
# The shortest text each shape can match (``eyJ`` + 4 + ``.`` + 4 + ``.`` + 4; ``Bearer`` + a space + 1;
# ``authorization=`` + 1): a shorter one is not searched at all. Most of what a server sends is short.
_JWT_MIN_CHARS = 17
_BEARER_MIN_CHARS = 8
_TOKEN_PARAM_MIN_CHARS = 15
# How deeply the pattern of known secrets nests its groups before it lists what is left flat: Python's regex
# parser recurses per group, and secrets that begin with one another ("a", "aa", "aaa"...) would nest one each.
_MAX_PATTERN_NESTING = 24

CUT_MARK = "…"
"""Ends a string that was cut short, and stands for what a list or an object in an excerpt left out."""


def mask(secret: str | None) -> str:
    """A short, recognisable prefix of a secret followed by an ellipsis: ``sk-abc…``."""
    if not secret:
        return "<none>"
    visible = secret[: C.SECRET_VISIBLE_PREFIX] if len(secret) > 2 * C.SECRET_VISIBLE_PREFIX else secret[:2]
    return f"{visible}…"


def _alternation(words: list[str], depth: int = 0) -> str:
    """Regex source matching any of ``words`` (sorted, distinct), the longest where several match at one place.

    A trie (``sk-a(?:bc|xy)``), not a flat ``sk-abc|sk-axy``: a flat alternation tries every word at each place
    where one could begin, so text made of the words' shared first characters costs seconds per megabyte.
    """
    if depth >= _MAX_PATTERN_NESTING:  # longest first: an alternation takes the first branch that matches
        return f"(?:{'|'.join(re.escape(word) for word in sorted(words, key=len, reverse=True))})"
    optional = words[0] == ""  # sorted: the empty word (one word ended here) comes first
    branches = []
    for _first, grouped in itertools.groupby(words[1:] if optional else words, key=lambda word: word[0]):
        group = list(grouped)
        prefix = _common_prefix(group[0], group[-1])  # sorted: what the first and last share, all share
        rest = [word[len(prefix) :] for word in group]
        branches.append(re.escape(prefix) + (_alternation(rest, depth + 1) if len(group) > 1 else ""))
    if len(branches) == 1 and not optional:
        return branches[0]
    # Greedy "?": the longer word is tried before the one that ends here.
    return f"(?:{'|'.join(branches)}){'?' if optional else ''}"


def _common_prefix(first: str, last: str) -> str:
    length = 0
    for one, other in zip(first, last, strict=False):
        if one != other:
            break
        length += 1
    return first[:length]


class _KnownSecrets:
    """A fixed set of secrets and one compiled pattern that finds them in any text."""

    def __init__(self, secrets: Collection[str]) -> None:
        self.secrets = frozenset(secrets)
        self.longest = max(map(len, self.secrets), default=0)
        # No secret fits in a text shorter than this (no secrets: none fits anywhere).
        self.shortest = min(map(len, self.secrets), default=_NO_SECRET)
        limit = C.REDACT_PATTERN_SECRET_CHARS
        heads = sorted({secret[:limit] for secret in self.secrets})
        self._pattern = re.compile(_alternation(heads)) if heads else None
        # The secrets longer than their head in the pattern, longest first, by head: a match is checked for them.
        self._longer: dict[str, list[str]] = {}
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) > limit:
                self._longer.setdefault(secret[:limit], []).append(secret)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of every occurrence of a secret in ``text``, overlapping ones included."""
        if self._pattern is None:
            return
        match = self._pattern.search(text)
        while match is not None:
            start, end = match.span()
            for secret in self._longer.get(match.group(), ()):
                if text.startswith(secret, start):
                    end = start + len(secret)
                    break
            yield start, end
            match = self._pattern.search(text, start + 1)


_NO_SECRET = 1 << 62  # the length of the shortest secret when there is none: longer than any text


@dataclass
class _Budget:
    """What is left of an excerpt's allowance."""

    values: int = C.ERROR_BODY_MAX_VALUES
    chars: int = C.ERROR_BODY_MAX_CHARS


class Redactor:
    """Replaces known secrets, and anything shaped like a JWT or a bearer credential, in free text."""

    def __init__(self, secrets: Iterable[str | None] = (), *, remember: int = C.MAX_REMEMBERED_SECRETS) -> None:
        self._pinned = {secret for secret in secrets if secret}  # the API key: for the client's lifetime
        # prompt_tokens: the most recent few only. An older token is still caught by the JWT pattern below.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        # The pattern of every secret known when it was built (one forgotten since is still masked until the next
        # build), and the secrets added since, looked for one by one until there are too many of them.
        self._known = _KnownSecrets(self._pinned)
        # Insertion-ordered, a dict for the membership test: a thousand streams add a thousand tokens.
        self._added: dict[str, None] = {}
        self._added_longest = 0
        self._added_shortest = _NO_SECRET
        # ``name``'s answers since the last secret was learnt: a server sends the same few field names every frame.
        self._names: dict[str, str] = {}

    def add(self, secret: str | None) -> None:
        if not secret or secret in self._pinned:
            return
        self._recent[secret] = None
        self._recent.move_to_end(secret)
        while len(self._recent) > self._remember:
            forgotten, _ = self._recent.popitem(last=False)
            # Not looked for one by one any more either (the JWT pattern still catches it): without this, the
            # list grew by every token ever added until the next redaction rebuilt the pattern.
            self._added.pop(forgotten, None)
        if secret not in self._known.secrets and secret not in self._added:
            self._added[secret] = None
            self._added_longest = max(self._added_longest, len(secret))
            self._added_shortest = min(self._added_shortest, len(secret))
            self._names.clear()

    def _current(self) -> tuple[_KnownSecrets, dict[str, None]]:
        """The compiled secrets and those added since; rebuilt (lazily, here) once too many were added."""
        if len(self._added) > C.REDACT_REBUILD_AFTER:
            self._known = _KnownSecrets({*self._pinned, *self._recent})
            self._added, self._added_longest, self._added_shortest = {}, 0, _NO_SECRET
        return self._known, self._added

    def name(self, text: str) -> str:
        """``self(text)`` for a field's name, remembered until a new secret is learnt (names of at most
        ``C.REDACT_NAME_MAX_CHARS``, ``C.REDACT_NAMES_REMEMBERED`` of them): once per name and secret, not once per
        frame. A name that holds no known secret whole skips the pass over the compiled secrets (and so never makes
        it rebuild the pattern mid-stream); the shape passes (JWT, bearer, token parameter) run as in ``__call__``.
        """
        found = self._names.get(text)
        if found is None:
            if any(secret in text for secret in self._pinned) or any(secret in text for secret in self._recent):
                found = self(text)
            else:
                found = self._mask_shapes(text)
            if len(text) <= C.REDACT_NAME_MAX_CHARS:
                if len(self._names) >= C.REDACT_NAMES_REMEMBERED:
                    self._names.clear()
                self._names[text] = found
        return found

    def __call__(self, text: str) -> str:
        # Each pass is skipped where it cannot match: a text shorter than any secret or shape, a JWT without its
        # "eyJ" head. The passes that run are the ones that ran before, in the same order.
        if len(text) >= self._known.shortest or len(text) >= self._added_shortest:
            text = self._mask_known(text)
        return self._mask_shapes(text)

    def _mask_shapes(self, text: str) -> str:
        """``text`` with anything shaped like a JWT, a bearer credential or a token parameter masked."""
        size = len(text)
        if size >= _JWT_MIN_CHARS and "eyJ" in text:
            text = _JWT_PATTERN.sub(lambda match: mask(match.group(0)), text)
            size = len(text)
        if size >= _BEARER_MIN_CHARS:
            text = _BEARER_PATTERN.sub(lambda match: match.group(1) + mask(match.group(2)), text)
        if len(text) >= _TOKEN_PARAM_MIN_CHARS:
            text = _TOKEN_PARAM_PATTERN.sub(lambda match: match.group(1) + mask(match.group(2)), text)
        return text

    def _mask_known(self, text: str) -> str:
        """``text`` with every occurrence of a known secret masked. Occurrences that overlap (a secret that begins
        with another, or inside another) are masked as one run, so that no part of either is left in the clear."""
        known, added = self._current()
        spans = list(known.spans(text)) if len(text) >= known.shortest else []
        for secret in added:
            if len(secret) > len(text):
                continue
            start = text.find(secret)
            while start >= 0:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        if not spans:
            return text
        spans.sort()
        pieces: list[str] = []
        copied = 0  # text[:copied] is in pieces already
        run_start, run_end = spans[0]
        for start, end in spans[1:]:
            if start < run_end:
                run_end = max(run_end, end)
                continue
            pieces += (text[copied:run_start], mask(text[run_start:run_end]))
            copied, run_start, run_end = run_end, start, end
        pieces += (text[copied:run_start], mask(text[run_start:run_end]), text[run_end:])
        return "".join(pieces)

    def cut(self, text: str, limit: int) -> str:
        """``text`` redacted and, when longer than ``limit`` characters, cut to them and ended with ``"…"``.

        Only the start of a long text is redacted: its first ``limit`` characters and a margin beyond (at least
        the longest known secret) on both sides of where it ends up cut, so a secret straddling the cut is masked
        whole (half a secret no longer matches, and would leave its head in the clear), and the part of the
        margin that may hold a secret the window itself cut off is dropped.
        """
        if len(text) <= limit:  # within any window: redacted whole, no margin to work out
            redacted = self(text)
            return redacted if len(redacted) <= limit else redacted[:limit] + CUT_MARK
        known, _added = self._current()
        margin = max(C.REDACT_CUT_MARGIN, known.longest, self._added_longest)
        window = limit + 2 * margin
        if len(text) <= window:
            redacted = self(text)
            return redacted if len(redacted) <= limit else redacted[:limit] + CUT_MARK
        redacted = self(text[:window])
        return redacted[: max(0, min(limit, len(redacted) - margin))] + CUT_MARK

    def excerpt(self, value: Any) -> Any:
        """What an error may keep of ``value`` (parsed JSON a server sent): redacted, keys included, and bounded.

        At most ``C.ERROR_BODY_MAX_VALUES`` values and ``C.ERROR_BODY_MAX_CHARS`` characters of strings are kept,
        each string cut at ``C.ERROR_BODY_MAX_STRING_CHARS`` (see :meth:`cut`); a list that had more ends with
        ``"…"``, an object gets the key ``"…"``; nesting deeper than ``C.ERROR_BODY_MAX_DEPTH`` becomes ``None``.
        A server may echo the key or a token anywhere in a body, and make the body as large as its cap allows.
        """
        if isinstance(value, str):  # most often a single field of a task entry
            return self._excerpt_text(value, _Budget(values=C.ERROR_BODY_MAX_VALUES - 1))
        return self._excerpt(value, _Budget(), depth=0)

    def _excerpt(self, value: Any, budget: _Budget, *, depth: int) -> Any:
        budget.values -= 1
        if isinstance(value, str):
            return self._excerpt_text(value, budget)
        if depth >= C.ERROR_BODY_MAX_DEPTH:
            return None
        if isinstance(value, Mapping):
            kept: dict[str, Any] = {}
            for key, item in value.items():
                if budget.values <= 0:
                    kept[CUT_MARK] = CUT_MARK
                    break
                budget.values -= 1
                kept[self._excerpt_text(str(key), budget)] = self._excerpt(item, budget, depth=depth + 1)
            return kept
        if isinstance(value, list | tuple):
            items: list[Any] = []
            for item in value:
                if budget.values <= 0:
                    items.append(CUT_MARK)
                    break
                items.append(self._excerpt(item, budget, depth=depth + 1))
            return items
        return value

    def _excerpt_text(self, text: str, budget: _Budget) -> str:
        if budget.chars <= 0:
            return CUT_MARK if text else text
        kept = self.cut(text, min(C.ERROR_BODY_MAX_STRING_CHARS, budget.chars))
        budget.chars -= len(kept)
        return kept


redact_shapes = Redactor()
"""Redacts the shapes of secrets (JWTs, bearer values, ``authorization=`` parameters) in any text."""
