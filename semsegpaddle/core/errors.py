"""Exceptions that carry a one-line, user-facing message (the CLI prints them without traceback)."""
from __future__ import annotations

import difflib
from typing import Iterable


class SemsegError(Exception):
    """Base class of errors caused by bad input: the message alone tells the user what to fix."""


class UnknownComponentError(SemsegError, KeyError):
    """A backbone, decoder or dataset name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class DuplicateComponentError(SemsegError):
    """Two plugins registered the same name for the same kind."""


class ConfigError(SemsegError):
    """A config file, key or value that is not valid."""


class DataError(SemsegError):
    """A dataset file or sample that is missing or malformed."""


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``word`` (difflib ratio ≥ 0.5), or None."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for error messages, or '' when nothing is close."""
    match = closest(word, candidates)
    return f" (did you mean '{match}'?)" if match else ""
