"""Whole-token keyword matching, so "ui" never matches inside "build", "guide" or "b-ui-ld"."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A token is a run of letters/digits; hyphens and underscores join fragments into ONE token,
# so "b-ui-ld", "end-to-end" and "ui_state" are single tokens and never match "ui" alone.
_TOKEN = re.compile(r"[^\W_]+(?:[-_][^\W_]+)*")


def tokenize(text: str) -> tuple[str, ...]:
    """Lower-cased whole tokens of `text`, in order."""
    return tuple(_TOKEN.findall(text.casefold()))


class TokenIndex:
    """Positions of every token in a text, for fast whole-token and phrase lookups."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self._positions: dict[str, list[int]] = {}
        for position, token in enumerate(self.tokens):
            self._positions.setdefault(token, []).append(position)

    def first_position(self, term: str) -> int | None:
        """Where `term` (a word or a space-separated phrase) first occurs, or None."""
        words = tokenize(term)
        if not words:
            return None
        for start in self._positions.get(words[0], ()):
            if self.tokens[start : start + len(words)] == words:
                return start
        return None

    def contains(self, term: str) -> bool:
        """Whether `term` occurs as whole tokens."""
        return self.first_position(term) is not None

    def find(self, terms: Iterable[str]) -> list[str]:
        """The distinct `terms` that occur, ordered by first occurrence (ties keep input order)."""
        found = []
        for order, term in enumerate(dict.fromkeys(terms)):
            position = self.first_position(term)
            if position is not None:
                found.append((position, order, term))
        return [term for _, _, term in sorted(found)]

    @property
    def first_token(self) -> str | None:
        """The request's first token, usually its imperative verb."""
        return self.tokens[0] if self.tokens else None
