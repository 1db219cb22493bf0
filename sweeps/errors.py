"""The error tree of `sweeps`.

``SweepsError`` is the root. ``ConfigError`` is bad user input (also a
``ValueError``); it carries every problem found, each naming file, line and
parameter. ``TrialError`` is a trial that failed while the sweep goes on;
``FatalError`` stops the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Problem:
    """One finding about an input file: where it is and what is wrong."""

    level: Level
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: " if self.file else ""
        tag = "" if self.level == "error" else f"{self.level}: "
        subject = f"{self.path}: " if self.path else ""
        return f"{where}{tag}{subject}{self.message}"


class SweepsError(Exception):
    """Root of every error `sweeps` raises on purpose."""


class ConfigError(SweepsError, ValueError):
    """Invalid user input; holds every problem found, reported together."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("error", "", None, "", problems)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TrialError(SweepsError):
    """A trial failed; the sweep goes on."""


class FatalError(SweepsError):
    """The sweep cannot go on."""
