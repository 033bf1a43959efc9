"""The project's exceptions. Every error says where, what was expected and what was given."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as the input allows.

    ``where`` is a YAML path (``rules[2].warning``) or a CSV position (``line 14, column spend``).
    """

    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}" if self.where else f"{self.file}: {self.message}"


class AnomalyError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(AnomalyError):
    """An input (config, rules, a data file) is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(InputError):
    """config.yaml or a rules file is invalid."""


class DataError(InputError):
    """A data file (metrics, change history, ownership) is invalid; nothing from it was stored."""


class SourceError(AnomalyError):
    """A connector could not fetch from its source (unreachable, unauthorised, quota)."""

    def __init__(self, source: str, message: str, *, account_id: str | None = None, request_id: str | None = None):
        self.source = source
        self.account_id = account_id
        self.request_id = request_id
        parts = [f"source {source!r}"]
        if account_id:
            parts.append(f"account {account_id}")
        if request_id:
            parts.append(f"request id {request_id}")
        super().__init__(f"{', '.join(parts)}: {message}")
