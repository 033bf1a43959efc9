"""What every config model shares: strict frozen models, paths resolved against the file that names
them, slugs, and how a key or a value is quoted in a message."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, Strict, ValidationInfo


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_path(value: str, info: ValidationInfo) -> str:
    if "\0" in value:
        raise ValueError(f"expected a file path, got {_short(value)}, which contains a NUL character")
    base = (info.context or {}).get("base_dir")
    if base is None or any(ch in value for ch in "\n\r"):
        return value
    try:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (Path(base) / path).resolve())
    except RuntimeError as exc:  # ~name of a user this system does not know, or a symlink loop
        raise ValueError(f"expected a file path, got {_short(value)}: {exc}") from None


FilePath = Annotated[str, Field(min_length=1), AfterValidator(_resolve_path)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
#: A whole-number setting as YAML writes it: ``true`` is not 1, ``7.0`` and ``'7'`` are not 7.
Int = Annotated[int, Strict()]
#: A number setting as YAML writes it, integer or not (``2``, ``2.5``, ``3e-4``), and finite: ``true``
#: is not 1, and ``.inf``, ``1e400`` (too large to be anything but infinite) or ``.nan`` as a
#: threshold would make a rule that can never fire, or always does.
Float = Annotated[float, Strict(), AllowInfNan(False)]


def _key(key: Any) -> str:
    """A mapping key as a YAML path shows it: as written, or quoted when it holds a line break or
    another unprintable character, so that each problem stays on one line."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
