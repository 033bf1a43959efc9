"""config.yaml and rules/*.yaml: strict, frozen pydantic models with every default in one place.

Loading reports every problem at once as ``file: path: message``. Strings may use ``${VAR}`` (or
``${VAR:-default}``) to read the environment, which is how secrets get in; ``$$`` is a literal
``$``. Relative paths are resolved against the folder of the file that names them.
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import os
import re
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import AfterValidator, BeforeValidator

from anomaly.errors import ConfigError, Problem

# ---------------------------------------------------------------------------------------------
# YAML loading: safe, duplicate keys rejected, positions kept for syntax errors, size bounded.

#: Bounds on what one YAML file may cost. A real config or rules file is a few kilobytes, a few
#: levels deep and a few hundred values long; these leave room for far larger ones while keeping a
#: broken or hostile file (an alias bomb, ten thousand nested brackets) to a fraction of a second.
MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 64
#: values in the document with each alias counted as the values it repeats, which is what every
#: later step (``interpolate_env``, validation) walks
MAX_YAML_VALUES = 20_000

_SCALAR_KINDS = {
    "timestamp": "a date (YYYY-MM-DD) or a date-time",
    "int": f"an integer (at most {sys.get_int_max_str_digits() or 'any number of'} digits)",
    "float": "a number",
    "bool": "true or false",
}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping (the second would silently win),
    keys that are lists or mappings, nesting deeper than ``MAX_YAML_DEPTH`` and documents whose
    aliases expand them beyond ``MAX_YAML_VALUES`` values; a value that PyYAML's own constructors
    cannot build (``2026-02-30``, ``!!int abc``) is a YAML error at its position."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._anchor_values: dict[str, int] = {}  # values under each finished anchor
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} is used inside its own anchor &{event.anchor}; expected an alias of a finished value", event.start_mark
                )
            self._count(self._anchor_values.get(event.anchor, 0), event.start_mark)  # an unknown alias is reported by PyYAML
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"expected at most {MAX_YAML_DEPTH} levels of nesting, got more", event.start_mark)
        first = self._values
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, event.start_mark)
        if event.anchor is not None:
            self._open_anchors.discard(event.anchor)
            self._anchor_values[event.anchor] = self._values - first
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"expected at most {MAX_YAML_VALUES:,} values, counting each alias as the values it repeats, and got more by this point", mark
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # PyYAML's constructors fail with these on a value that its resolver or an explicit tag
            # sent them but that they cannot build
            kind = node.tag.rsplit(":", 1)[-1]
            expected = _SCALAR_KINDS.get(kind, f"a value of type !!{kind}")
            given = _short(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            # what datetime says is wrong, when it says it briefly ("day is out of range for month")
            brief = kind == "timestamp" and isinstance(exc, (ValueError, OverflowError)) and len(str(exc)) <= 40
            detail = f" ({exc})" if brief else ""
            raise yaml.constructor.ConstructorError(None, None, f"expected {expected}, got {given}{detail}", node.start_mark) from None


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    if not isinstance(node, yaml.MappingNode):  # a scalar or a list tagged !!map
        raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, got a {node.id}", node.start_mark)
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            kind = "list" if isinstance(key, list) else "mapping" if isinstance(key, dict) else type(key).__name__
            raise yaml.constructor.ConstructorError(None, None, f"expected a key that is text or a number, got a {kind}", key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file safely. Raise ConfigError naming the line and column of a syntax error."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_YAML_BYTES + 1)  # no further: the file may be huge, or endless
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(str(path), "", "is a directory, expected a YAML file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read the file ({exc.strerror or exc})")]) from None
    if len(data) > MAX_YAML_BYTES:
        given = f"{size:,} bytes" if size > MAX_YAML_BYTES else "more"  # a device or a pipe has no size
        raise ConfigError([Problem(str(path), "", f"expected a YAML file of at most {MAX_YAML_BYTES:,} bytes, got {given}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            message = "not valid UTF-8 (the file is UTF-16); save the file as UTF-8"
        else:
            message = f"not valid UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        raise ConfigError([Problem(str(path), "", message)]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = exc.problem or str(exc)
        if exc.context and exc.context not in message:
            message = f"{exc.context}: {message}"
        raise ConfigError([Problem(str(path), where, f"invalid YAML: {message}")]) from None
    except yaml.reader.ReaderError as exc:  # a control character; PyYAML gives only its offset
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        where = f"line {line}, column {column}"
        hint = "; is the file UTF-16? save it as UTF-8" if exc.character == 0 else ""
        raise ConfigError([Problem(str(path), where, f"invalid YAML: expected printable text, got the character {chr(exc.character)!r}{hint}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), "", f"invalid YAML: {exc}")]) from None


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(
    data: Any, file: str, environ: dict[str, str] | None = None, substituted: dict[str, str] | None = None
) -> tuple[Any, list[Problem]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree. When given,
    ``substituted`` receives each value read from the environment with the reference that read it
    (``{"xoxb-…": "${SLACK_BOT_TOKEN}"}``), so that messages can show the reference instead."""
    env = os.environ if environ is None else environ
    problems: list[Problem] = []

    def sub(value: str, path: str) -> str:
        def one(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                if substituted is not None and env[name]:
                    substituted[env[name]] = match.group(0)
                return env[name]
            if default is not None:
                return default
            problems.append(Problem(file, path, f"environment variable {name} is not set"))
            return ""

        return _ENV_REF.sub(one, value)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{_key(k)}" if path else _key(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):
            return sub(node, path)
        return node

    return walk(data, ""), problems


# ---------------------------------------------------------------------------------------------
# Shared pieces


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

# ---------------------------------------------------------------------------------------------
# Rules (rules/*.yaml)

Severity = Literal["warning", "critical"]
SEVERITIES: tuple[str, ...] = ("warning", "critical")


class Scope(StrictModel):
    """Where a rule applies; an empty list means everywhere. ``parties`` is the managing party on the day."""

    accounts: list[str] = []
    campaigns: list[str] = []
    parties: list[str] = []


class ForestGate(StrictModel):
    """How a rule combines with the isolation-forest score (higher = more anomalous, 0..1).

    ``ignore``: the rule alone decides. ``require``: the rule fires only when the score is at least
    ``min_score`` as well. ``escalate``: a warning becomes critical when the score is at least
    ``min_score``.
    """

    mode: Literal["ignore", "require", "escalate"] = "ignore"
    min_score: float = Field(0.99, gt=0, lt=1)


class AfterOwnershipChange(StrictModel):
    """Stricter settings for the first ``within_days`` after the managing party changes."""

    within_days: int = Field(14, ge=1, le=365)
    warning: float | None = None
    critical: float | None = None
    min_spend: float | None = Field(None, ge=0)
    min_expected_leads: float | None = Field(None, ge=0)
    max_p_value: float | None = Field(None, gt=0, le=1)


TUNABLES = ("warning", "critical", "min_spend", "min_expected_leads", "max_p_value")


class RuleBase(StrictModel):
    name: Slug
    description: str = ""
    enabled: bool = True
    family: Slug | None = None
    window_days: int = Field(1, ge=1, le=28)
    warning: float
    critical: float | None = None
    min_spend: float = Field(0.0, ge=0)
    min_expected_leads: float = Field(0.0, ge=0)
    max_p_value: float | None = Field(None, gt=0, le=1)
    baseline_lag_days: int = Field(0, ge=0, le=90)
    scope: Scope = Scope()
    forest: ForestGate = ForestGate()
    after_ownership_change: AfterOwnershipChange | None = None

    #: What a breach looks like: "above" (observed >= threshold) or "below" (observed <= threshold).
    def breach_direction(self) -> str:
        return "above"

    def default_family(self) -> str:
        return "cost_per_lead"

    @property
    def rule_family(self) -> str:
        return self.family or self.default_family()

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        """Why ``value`` cannot be a warning/critical threshold of this rule type (None when it can)."""
        return None

    @field_validator("warning", "critical")
    @classmethod
    def _threshold_in_range(cls, value: float | None) -> float | None:
        if value is not None and (msg := cls._check_threshold(value)):
            raise ValueError(f"{msg}, got {value:g}")
        return value

    @model_validator(mode="after")
    def _check_thresholds(self) -> "RuleBase":
        problems: list[str] = []
        for prefix, source in (("", self), ("after_ownership_change.", self.after_ownership_change)):
            if source is None:
                continue
            if source is not self:
                out_of_range = [
                    f"{prefix}{name}: {msg}, got {value:g}"
                    for name in ("warning", "critical")
                    if (value := getattr(source, name)) is not None and (msg := self._check_threshold(value))
                ]
                if out_of_range:  # comparing a value already reported would only repeat it
                    problems.extend(out_of_range)
                    continue
            warning_only = source is not self and source.critical is None
            if source is not self and source.warning is None and source.critical is None:
                continue  # both inherited: the rule's own pair is checked above
            warning = source.warning if source.warning is not None else self.warning
            critical = source.critical if source.critical is not None else (self.critical if source is not self else None)
            if critical is not None and warning is not None:
                above = self.breach_direction() == "above"
                worse = critical >= warning if above else critical <= warning
                if not worse and warning_only:  # the override set only the warning: it is the one at fault
                    problems.append(f"{prefix}warning: must be {'at most' if above else 'at least'} critical ({critical:g}), got {warning:g}")
                elif not worse:
                    problems.append(f"{prefix}critical: must be {'at least' if above else 'at most'} warning ({warning:g}), got {critical:g}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_overrides(self) -> "RuleBase":
        """This rule with its after-ownership-change settings applied (itself when it has none)."""
        if self.after_ownership_change is None:
            return self
        update = {k: getattr(self.after_ownership_change, k) for k in TUNABLES}
        return self.model_copy(update={k: v for k, v in update.items() if v is not None})


class CplRatioRule(RuleBase):
    """Cost per lead over the window at least ``warning``× the campaign's baseline.

    The ratio is estimated with one pseudo-lead on each side, so zero leads on a day that should
    have bought four reads as 5×, not infinity. ``max_p_value`` (default 0.001) asks that so few
    leads for the spend be implausible at the baseline cost per lead, so that two noisy days of a
    small campaign do not alert. With ``use_clicks`` the clicks count as evidence too: a cost per
    click far above baseline shows a spike on its first day, before the leads can.
    """

    type: Literal["cpl_ratio"]
    max_p_value: float | None = Field(0.001, gt=0, le=1)
    use_clicks: bool = True

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value > 1 else "must be a ratio > 1"


class LeadShortfallRule(RuleBase):
    """Spend with too few leads: leads over the window at most ``warning`` × the leads the spend
    should have bought at baseline (0.2 = fewer than a fifth). Zero leads is data, not missing."""

    type: Literal["lead_shortfall"]
    min_expected_leads: float = Field(3.0, ge=0)
    max_p_value: float | None = Field(0.001, gt=0, le=1)

    def breach_direction(self) -> str:
        return "below"

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if 0 <= value < 1 else "must be a fraction of the expected leads, >= 0 and < 1"


MetricName = Literal["cpl", "cpc", "ctr", "cvr", "spend", "leads", "clicks", "impressions"]


class ThresholdRule(RuleBase):
    """An absolute threshold on a metric over the window, e.g. cost per lead above 400."""

    type: Literal["threshold"]
    metric: MetricName
    direction: Literal["above", "below"] = "above"

    def breach_direction(self) -> str:
        return self.direction

    def default_family(self) -> str:
        return "cost_per_lead" if self.metric == "cpl" else self.metric

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value >= 0 else "must be >= 0"


class SpendRatioRule(RuleBase):
    """Spend over the window at least ``warning``× what the campaign usually spends on those
    weekdays: a runaway budget or bid. Budget changes within the ratio stay quiet."""

    type: Literal["spend_ratio"]

    def default_family(self) -> str:
        return "spend"

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value > 1 else "must be a ratio > 1"


class IsolationForestRule(RuleBase):
    """The isolation-forest score alone (0..1, higher = more anomalous than more of history), only on
    days whose cost per lead is worse than baseline: cheaper leads never alert."""

    type: Literal["isolation_forest"]

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if 0 < value < 1 else "must be a score > 0 and < 1"

    @field_validator("forest")
    @classmethod
    def _no_gate(cls, gate: ForestGate) -> ForestGate:
        if gate.mode != "ignore":
            raise ValueError(f"mode: expected 'ignore' (an isolation_forest rule is the score itself), got {gate.mode!r}")
        return gate


#: The registry: a rule's YAML ``type`` → its model. Nothing in YAML names Python code.
RULE_TYPES: dict[str, type[RuleBase]] = {
    "cpl_ratio": CplRatioRule,
    "lead_shortfall": LeadShortfallRule,
    "threshold": ThresholdRule,
    "spend_ratio": SpendRatioRule,
    "isolation_forest": IsolationForestRule,
}

Rule = Annotated[
    Union[CplRatioRule, LeadShortfallRule, ThresholdRule, SpendRatioRule, IsolationForestRule],
    Field(discriminator="type"),
]


class RulesFile(StrictModel):
    rules: list[Rule] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# config.yaml


class PartyConfig(StrictModel):
    name: str = Field(min_length=1)
    domains: list[str] = []

    @field_validator("domains")
    @classmethod
    def _lower(cls, domains: list[str]) -> list[str]:
        bad = [d for d in domains if not re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", d)]
        if bad:
            raise ValueError(f"expected email domains like 'agency.com', got {bad[0]!r}")
        return [d.lower() for d in domains]


class StoreConfig(StrictModel):
    """Where data, incidents and the alert outbox live. A SQLite file by default; PostgreSQL by URL
    (``postgresql+psycopg://user:${DB_PASSWORD}@host/db``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, revalidate_instances="always")

    # validated even when defaulted, so that a relative SQLite file lands beside config.yaml
    url: SecretStr = Field(SecretStr("sqlite:///anomaly.db"), validate_default=True)

    @field_validator("url", mode="after")
    @classmethod
    def _resolve_sqlite(cls, url: SecretStr, info: ValidationInfo) -> SecretStr:
        raw = url.get_secret_value()
        if "\0" in raw:  # the URL itself stays unshown: it may hold a password
            raise ValueError("expected a database URL, got one that contains a NUL character")
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", raw):
            # show only the scheme: the rest of the URL may hold a password
            given = f"one starting {raw.split('://', 1)[0] + '://'!r}" if "://" in raw else "a value without '://'"
            raise ValueError(f"expected a database URL starting sqlite:/// or postgresql://, got {given}")
        base = (info.context or {}).get("base_dir")
        m = re.match(r"^(sqlite(\+\w+)?:///)(.+)$", raw)
        if base and m and m.group(3) != ":memory:" and not Path(m.group(3)).is_absolute():
            raw = m.group(1) + str((Path(base) / m.group(3)).resolve())
        return SecretStr(raw)


Crontab = Annotated[str, Field(min_length=9, max_length=120)]


def _time_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long to be a file name
        raise ValueError(f"expected an IANA time zone like 'Europe/Berlin' or 'UTC', got {value!r}") from None
    return value


class ScheduleConfig(StrictModel):
    """When ``anomaly serve`` pulls a source: a crontab line (minute hour day month weekday) in
    ``timezone`` (an IANA name; default: the service's)."""

    cron: Crontab = "15 7 * * *"
    timezone: str | None = None

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"expected a crontab line (minute hour day month weekday), got {value!r}: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _time_zone(value)


class CsvSourceConfig(StrictModel):
    """CSV files and partner spreadsheets saved as CSV. Globs (``exports/*.csv``) are allowed."""

    type: Literal["csv"]
    name: Slug
    metrics: list[FilePath] = Field(min_length=1)
    changes: list[FilePath] = []
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    lookback_days: int = Field(7, ge=0, le=90)
    history_days: int = Field(400, ge=1, le=3650)
    schedule: ScheduleConfig = ScheduleConfig()


CustomerId = Annotated[str, Field(pattern=r"^\d{10}$")]
#: Google Ads ConversionActionCategory values that can count as a lead (there is no LEAD value).
LeadCategory = Literal[
    "SUBMIT_LEAD_FORM", "PHONE_CALL_LEAD", "IMPORTED_LEAD", "QUALIFIED_LEAD", "CONVERTED_LEAD",
    "MESSAGE_LEAD", "BOOK_APPOINTMENT", "REQUEST_QUOTE", "CONTACT", "SIGNUP",
]


class LeadDefinition(StrictModel):
    """What counts as a lead in an account: conversions in these categories, or (when given) of
    these named conversion actions only."""

    categories: list[LeadCategory] = ["SUBMIT_LEAD_FORM", "PHONE_CALL_LEAD", "IMPORTED_LEAD"]
    conversion_actions: list[str] = []


class OwnershipInferenceConfig(StrictModel):
    """Record an ownership change when a party that has not been managing an account makes
    ``min_changes`` changes to it; ownership declared in config always wins."""

    enabled: bool = True
    min_changes: int = Field(2, ge=1, le=1000)


class GoogleAdsSourceConfig(StrictModel):
    """Google Ads through the official client: every client account under a manager (MCC) account,
    or the listed accounts. Credentials from ``credentials`` (a google-ads.yaml) or, when it is not
    set, from the ``GOOGLE_ADS_*`` environment variables."""

    type: Literal["google_ads"]
    name: Slug
    credentials: FilePath | None = None
    login_customer_id: CustomerId | None = None
    customer_ids: list[CustomerId] = []  # empty: every client account under login_customer_id
    exclude_customer_ids: list[CustomerId] = []
    leads: LeadDefinition = LeadDefinition()
    account_leads: dict[CustomerId, LeadDefinition] = {}  # per-account lead definitions
    change_history: bool = True
    ownership_inference: OwnershipInferenceConfig = OwnershipInferenceConfig()
    lookback_days: int = Field(7, ge=0, le=90)
    history_days: int = Field(90, ge=1, le=3650)
    timeout_seconds: float = Field(120.0, gt=0, le=3600)
    max_attempts: int = Field(5, ge=1, le=20)
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _accounts_to_pull(self) -> "GoogleAdsSourceConfig":
        if not self.customer_ids and not self.login_customer_id:
            raise ValueError("customer_ids: list the accounts to pull, or set login_customer_id to pull every client of a manager account")
        return self


Source = Annotated[Union[CsvSourceConfig, GoogleAdsSourceConfig], Field(discriminator="type")]


class OwnershipPeriodConfig(StrictModel):
    party: Slug
    since: dt.date


class OwnershipAssignment(StrictModel):
    """Who has managed an account (or one campaign of it) since when, oldest first."""

    account_id: str = Field(min_length=1)
    campaign_id: str | None = None
    history: list[OwnershipPeriodConfig] = Field(min_length=1)

    @field_validator("history")
    @classmethod
    def _ordered(cls, history: list[OwnershipPeriodConfig]) -> list[OwnershipPeriodConfig]:
        for before, after in zip(history, history[1:]):
            if after.since <= before.since:
                raise ValueError(f"expected 'since' dates in increasing order, got {before.since} then {after.since}")
        return history


class OwnershipConfig(StrictModel):
    file: FilePath | None = None
    default_party: Slug | None = None
    assignments: list[OwnershipAssignment] = []


class BaselineConfig(StrictModel):
    """Each campaign's trailing baseline: exponentially weighted, blind to days that are
    significantly worse than it (so an ongoing incident does not become the new normal), held at
    its pre-handoff level for ``probation_days`` after the managing party changes, and for small
    campaigns shrunk toward the account's cost per lead by ``shrink_leads`` pseudo-leads."""

    half_life_days: float = Field(14.0, gt=0, le=365)
    min_days: int = Field(14, ge=1, le=365)
    min_leads: float = Field(5.0, ge=0)
    elevated_ratio: float = Field(1.3, gt=1)
    elevated_p_value: float = Field(0.01, gt=0, le=1)
    max_excluded_days: int = Field(28, ge=1, le=365)
    probation_days: int = Field(28, ge=0, le=365)
    shrink_leads: float = Field(5.0, ge=0)
    weekday_half_life_weeks: float = Field(8.0, gt=0, le=104)
    weekday_prior_weeks: float = Field(2.0, ge=0)


class VariationConfig(StrictModel):
    """Day-to-day variation beyond counting noise, as a coefficient of variation: how much a
    campaign's cost per lead (``leads``) and cost per click (``clicks``) move on a normal day.
    Larger values make every significance test more cautious."""

    leads: float = Field(0.15, ge=0, le=2)
    clicks: float = Field(0.15, ge=0, le=2)


class ForestConfig(StrictModel):
    """One isolation forest for the whole portfolio, refitted on the first of each month on the
    ``training_days`` before it, so a replay and a live run score every day the same way."""

    enabled: bool = False
    n_estimators: int = Field(100, ge=1, le=1000)
    max_samples: int = Field(256, ge=16, le=100_000)
    training_days: int = Field(180, ge=7, le=3650)
    min_training_rows: int = Field(500, ge=10)
    random_state: int = 0


class IncidentConfig(StrictModel):
    resolve_after_days: int = Field(2, ge=1, le=60)
    changes_before_onset_days: int = Field(7, ge=0, le=90)


class DetectionConfig(StrictModel):
    account_level: bool = True  # also watch each account's total, as if it were one more campaign
    baseline: BaselineConfig = BaselineConfig()
    variation: VariationConfig = VariationConfig()
    forest: ForestConfig = ForestConfig()
    incidents: IncidentConfig = IncidentConfig()


class ConsoleSinkConfig(StrictModel):
    type: Literal["console"]

    @property
    def name(self) -> str:
        return "console"


class JsonlSinkConfig(StrictModel):
    type: Literal["jsonl"]
    path: FilePath

    @property
    def name(self) -> str:
        return f"jsonl:{self.path}"


class SlackSinkConfig(StrictModel):
    """Alerts to a Slack channel through a bot token (chat.postMessage, threads, updates). The
    token comes from the environment, e.g. ``token: ${SLACK_BOT_TOKEN}``; ``channel`` is best given
    as its ID (C0…), which history and updates need."""

    type: Literal["slack"]
    channel: str = Field(min_length=2, max_length=80)
    token: SecretStr
    base_url: str | None = None  # another Slack API endpoint (a proxy, an Enterprise Grid gateway)
    timeout_seconds: float = Field(30.0, gt=0, le=300)
    max_retries: int = Field(3, ge=0, le=10)

    @property
    def name(self) -> str:
        return f"slack:{self.channel}"


class SlackWebhookSinkConfig(StrictModel):
    """Alerts to the one channel of a Slack incoming webhook: plain messages only (no threads, no
    updates in place, no check for a message already posted). ``url`` is a secret, e.g.
    ``url: ${SLACK_WEBHOOK_URL}``; ``label`` names the sink (``slack-webhook:<label>``)."""

    type: Literal["slack_webhook"]
    url: SecretStr
    label: Slug = "default"
    timeout_seconds: float = Field(30.0, gt=0, le=300)
    max_retries: int = Field(3, ge=0, le=10)

    @property
    def name(self) -> str:
        return f"slack-webhook:{self.label}"


Sink = Annotated[Union[ConsoleSinkConfig, JsonlSinkConfig, SlackSinkConfig, SlackWebhookSinkConfig], Field(discriminator="type")]


class SilenceConfig(StrictModel):
    """Hold back the notifications of the incidents that every matcher given names (at least one)
    until ``until``: a date (the end of that day, UTC) or a datetime (UTC unless it has an offset).
    Detection goes on; see ``anomaly.silences``."""

    account: str | None = Field(None, min_length=1)  # account id
    campaign: str | None = Field(None, min_length=1)  # campaign id
    rule: Slug | None = None  # the rule that opened the incident
    party: Slug | None = None  # the managing party's key
    until: dt.datetime
    reason: str = ""
    created_by: str = ""

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: Any) -> dt.datetime:
        from anomaly.silences import ABSOLUTE_FORMS, parse_time

        if not isinstance(value, (str, dt.date)):
            raise ValueError(f"expected {ABSOLUTE_FORMS}, got {value!r}")
        try:
            return parse_time(value)
        except OverflowError:  # 9999-12-31 (its end is past the last representable day), or an offset that crosses it
            given = value if isinstance(value, str) else value.isoformat()
            raise ValueError(f"expected {ABSOLUTE_FORMS} before 9999-12-31, got {given!r}") from None

    @model_validator(mode="after")
    def _some_matcher(self) -> "SilenceConfig":
        from anomaly.silences import MATCHED_FIELDS

        if all(getattr(self, name) is None for name in MATCHED_FIELDS):
            raise ValueError(f"expected at least one matcher ({', '.join(MATCHED_FIELDS)}), got none")
        return self


MENTION_FORMS = "a user ID (U0123ABCD), a user group ID (S0123ABCD), 'here' or 'channel'"
_MENTION = re.compile(r"^(?:[UW][A-Z0-9]{2,20}|S[A-Z0-9]{2,20}|here|channel)$")


def _mention(value: str) -> str:
    if not _MENTION.match(value):
        raise ValueError(f"expected {MENTION_FORMS}, got {value!r}")
    return value


Mention = Annotated[str, AfterValidator(_mention)]


def _resolve_sink_name(value: str, info: ValidationInfo) -> str:
    base = (info.context or {}).get("base_dir")
    return value if base is None else resolve_sink_name(value, Path(base) / "config.yaml")


#: a sink as config names it: ``console``, ``jsonl:PATH`` (relative to config.yaml), ``slack:C0123ABCD``
SinkName = Annotated[str, Field(min_length=1), AfterValidator(_resolve_sink_name)]


def _listed(value: Any) -> Any:
    """One value where a list is expected: ``party: beacon`` means ``party: [beacon]``."""
    return [value] if isinstance(value, (str, int)) else value


class RouteConfig(StrictModel):
    """Where the notifications of matching incidents go, and whom they mention. A route matches
    when every matcher it gives matches (a list: any of its values); one with no matcher matches
    everything. ``party`` is the party managing the campaign at onset, or, with ``party_at: now``,
    the party managing it now. ``severity: warning`` matches every incident, ``critical`` the
    critical ones (an incident that becomes critical starts reaching the route then). Routes are
    tried in order; the first that matches decides, unless it says ``continue: true``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    account: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_listed)] = []  # account ids
    party: Annotated[list[Slug], BeforeValidator(_listed)] = []
    party_at: Literal["onset", "now"] = "onset"
    severity: Severity | None = None  # at least this severe
    sinks: Annotated[list[SinkName], BeforeValidator(_listed)] = Field(min_length=1)
    mentions: Annotated[list[Mention], BeforeValidator(_listed)] = []
    continue_matching: bool = Field(False, alias="continue")


class SlackAppConfig(StrictModel):
    """The interactive side of the Slack app: Acknowledge and Snooze buttons on each alert, handled
    inside ``anomaly serve``. With ``app_token`` (xapp-…, Socket Mode) no public URL is needed;
    otherwise Slack posts to ``http://<host>:<port><path>``, every request checked against
    ``signing_secret``."""

    bot_token: SecretStr
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    host: str = "0.0.0.0"
    port: int = Field(3000, ge=0, le=65535)
    path: str = Field("/slack/events", pattern=r"^/[A-Za-z0-9/_.-]*$")
    base_url: str | None = None  # another Slack API endpoint, as for the sinks

    @model_validator(mode="after")
    def _a_way_in(self) -> "SlackAppConfig":
        if self.app_token is None and self.signing_secret is None:
            raise ValueError("expected app_token (Socket Mode) or signing_secret (HTTP requests from Slack), got neither")
        return self


#: a Google Ads campaign in the web interface; {account_id} and {campaign_id} are filled in
GOOGLE_ADS_CAMPAIGN_URL = "https://ads.google.com/aw/campaigns?campaignId={campaign_id}&__e={account_id}"
_URL_FIELDS = re.compile(r"\{(account_id|campaign_id)\}")


def _campaign_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("https://"):
        raise ValueError(f"expected an https:// URL, got {value!r}")
    if "{" in _URL_FIELDS.sub("", value) or "}" in _URL_FIELDS.sub("", value):
        raise ValueError(f"expected only {{account_id}} and {{campaign_id}} between braces, got {value!r}")
    return value


class AlertsConfig(StrictModel):
    """Where alerts go and how often. ``routes`` pick sinks per incident (see RouteConfig); a
    notification no route matches goes to ``default_sinks``; a sink that no route and no
    ``default_sinks`` names gets every notification (a console or a JSON-lines log). Without
    routes, every sink gets every notification."""

    sinks: list[Sink] = [ConsoleSinkConfig(type="console")]
    routes: list[RouteConfig] = []
    default_sinks: Annotated[list[SinkName], BeforeValidator(_listed)] = []
    silences: list[SilenceConfig] = []
    #: this many incidents opened on one account in one cycle go out as one grouped message
    group_min_incidents: int = Field(4, ge=2, le=1000)
    #: a reminder while an incident stays open and unacknowledged, this long after its last
    #: message on a sink; 0 sends none
    repeat_every_hours: float = Field(24.0, ge=0, le=24 * 90)
    #: the excess cost (account currency) whose crossing updates the alert, ascending
    excess_steps: list[Annotated[float, Field(gt=0)]] = [1000.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0]
    #: a link to the campaign in the alert, for ids that look like Google Ads ids; null for none
    campaign_url: Annotated[str | None, AfterValidator(_campaign_url)] = GOOGLE_ADS_CAMPAIGN_URL
    slack_app: SlackAppConfig | None = None

    @field_validator("excess_steps")
    @classmethod
    def _ascending(cls, steps: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"expected ascending amounts, got {steps}")
        return steps


class ServiceConfig(StrictModel):
    """``anomaly serve``: the scheduler's time zone, how often it delivers pending alerts, when it
    refits the model, how late a missed run may still start, and which alert sink (by ``name``)
    hears about failing jobs."""

    timezone: str = "UTC"
    deliver_every_minutes: int = Field(5, ge=1, le=1440)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _time_zone(value)
    refit: ScheduleConfig = ScheduleConfig(cron="30 4 * * *")
    misfire_grace_seconds: int = Field(3600, ge=1, le=86_400)
    operations_sink: str | None = None


class SettlementConfig(StrictModel):
    """The proposed split of an incident's excess cost in ``anomaly report``.

    ``bears`` says who bears each part of the excess before any contract applies:
    ``managing_party`` (each day's excess falls to the party managing the campaign that day) or
    ``changed_by`` (the excess falls to the parties whose people made the changes listed with the
    incident, in proportion to how many each made; changes by automated tools or unknown users, or
    no changes at all, leave it with the managing party). ``shares`` then splits what a party bears
    by contract, in percent: ``{beacon: {beacon: 80, northwind: 20}}``.
    """

    bears: Literal["managing_party", "changed_by"] = "managing_party"
    shares: dict[Slug, dict[Slug, Annotated[float, Field(gt=0, le=100)]]] = {}

    @model_validator(mode="after")
    def _whole(self) -> "SettlementConfig":
        problems = [
            f"shares.{bearer}: expected percentages that add up to 100, got {sum(split.values()):g}"
            for bearer, split in self.shares.items()
            if abs(sum(split.values()) - 100.0) > 0.01
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Config(StrictModel):
    store: StoreConfig = Field(StoreConfig(), validate_default=True)
    parties: dict[Slug, PartyConfig] = {}
    sources: list[Source] = []
    ownership: OwnershipConfig = OwnershipConfig()
    rules_dir: FilePath = Field("rules", validate_default=True)  # beside config.yaml, not the working directory
    detection: DetectionConfig = DetectionConfig()
    alerts: AlertsConfig = AlertsConfig()
    service: ServiceConfig = ServiceConfig()
    settlement: SettlementConfig | None = None

    def party_name(self, party: str | None) -> str:
        """Display name of a party key (the key itself when it is not configured)."""
        if not party:
            return "unknown"
        return self.parties[party].name if party in self.parties else party


# ---------------------------------------------------------------------------------------------
# Error formatting


_TAGGED: dict[str, type[BaseModel]] = {
    **RULE_TYPES,
    "csv": CsvSourceConfig,
    "console": ConsoleSinkConfig,
    "jsonl": JsonlSinkConfig,
}
_TAGS = set(_TAGGED)


def _union_tags(union: Any) -> list[str]:
    members = typing.get_args(union)[0]  # Annotated[Union[...], Field(discriminator="type")]
    return [typing.get_args(m.model_fields["type"].annotation)[0] for m in (typing.get_args(members) or (members,))]


#: The ``type`` values a list of tagged items accepts, by the list's key.
_TAGS_BY_LIST: dict[str, list[str]] = {"rules": _union_tags(Rule), "sources": _union_tags(Source), "sinks": _union_tags(Sink)}


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at ``loc`` (a pydantic error location, last item excluded) accepts."""
    current: Any = root
    for item in loc:
        if isinstance(item, str) and item in _TAGS:
            current = _TAGGED[item]
            continue
        while True:  # unwrap Annotated / Optional / list / dict down to the next model or container
            origin = getattr(current, "__origin__", None)
            if hasattr(current, "__metadata__"):
                current = current.__origin__
            elif origin is Union or type(current).__name__ == "UnionType":
                models = [a for a in current.__args__ if a is not type(None)]
                current = models[0] if len(models) == 1 else current
                break
            else:
                break
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(item, str):
            field = current.model_fields.get(item)
            if field is None:
                return []
            current = field.annotation
        elif getattr(current, "__origin__", None) in (list, dict):
            current = current.__args__[-1]
        else:
            continue
    while hasattr(current, "__metadata__") or getattr(current, "__origin__", None) is Union or type(current).__name__ == "UnionType":
        if hasattr(current, "__metadata__"):
            current = current.__origin__
        else:
            models = [a for a in current.__args__ if a is not type(None)]
            if len(models) != 1:
                return []
            current = models[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(field.alias or name for name, field in current.model_fields.items())
    return []


def _key(key: Any) -> str:
    """A mapping key as a YAML path shows it: as written, or quoted when it holds a line break or
    another unprintable character, so that each problem stays on one line."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def _format_loc(loc: tuple) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _TAGS and i > 0 and isinstance(loc[i - 1], int):
            continue  # the discriminator tag pydantic puts after a union member's index
        elif item.startswith("function-after[") or item.startswith("json-or-python["):
            continue
        else:
            parts.append(f".{_key(item)}" if parts else _key(item))
    return "".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hide(value: Any, hidden: dict[str, str]) -> Any:
    """``value`` with every environment value in ``hidden`` written as its ``${VAR}`` again: a
    message quotes what it was given, and that may be a secret."""
    if not hidden:
        return value
    if isinstance(value, str):
        for secret in sorted(hidden, key=len, reverse=True):
            value = value.replace(secret, hidden[secret])
        return value
    if isinstance(value, dict):
        return {k: _hide(v, hidden) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hide(v, hidden) for v in value]
    return value


def _hidden_problems(problems: list[Problem], hidden: dict[str, str]) -> list[Problem]:
    return [Problem(p.file, p.where, _hide(p.message, hidden)) for p in problems] if hidden else problems


def _problems_from_validation(exc: ValidationError, file: str, root: type[BaseModel], hidden: dict[str, str] | None = None) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        given = _hide(err.get("input"), hidden or {})
        msg = err["msg"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            expected = f"{hint}expected one of: {', '.join(allowed)}" if allowed else "not a setting here"
            problems.append(Problem(file, _format_loc(loc), f"unknown key; {expected}"))
            continue
        if kind == "missing":
            problems.append(Problem(file, _format_loc(loc), "required key is missing"))
            continue
        if kind == "invalid_key":  # a key that is not text where setting names go; ``loc`` ends with it
            problems.append(Problem(file, _format_loc(loc[:-1]), f"keys should be text, got the key {_short(given)}"))
            continue
        if loc and loc[-1] == "[key]":  # a key of a mapping that fails its check: ``loc`` ends with it and "[key]"
            text = msg[0].lower() + msg[1:]
            problems.append(Problem(file, _format_loc(loc[:-2]), f"key {_short(given)}: {text}"))
            continue
        if kind == "union_tag_invalid":
            expected = err.get("ctx", {}).get("expected_tags", "")
            problems.append(Problem(file, _format_loc(loc) + ".type", f"expected one of {expected}, got {_short(err.get('ctx', {}).get('tag'))}"))
            continue
        if kind == "union_tag_not_found":  # pydantic does not say which tags it accepts here
            tags = _TAGS_BY_LIST.get(next((str(i) for i in reversed(loc) if isinstance(i, str)), ""), [])
            expected = f"; expected one of {', '.join(repr(t) for t in tags)}" if tags else ""
            problems.append(Problem(file, _format_loc(loc) + ".type", f"required key is missing{expected}"))
            continue
        if kind == "value_error":
            text = msg.removeprefix("Value error, ")
            for piece in text.split("; "):
                sub = re.match(r"^([a-z_]+(?:\.[a-z_]+)*): (.*)$", piece)
                if sub and sub.group(1).split(".")[0] in _allowed_keys(root, loc):
                    where = ".".join(filter(None, [_format_loc(loc), sub.group(1)]))
                    problems.append(Problem(file, where, sub.group(2)))
                else:
                    problems.append(Problem(file, _format_loc(loc), piece))
            continue
        if kind == "too_short" and isinstance(given, list):
            n = err.get("ctx", {}).get("min_length", 1)
            problems.append(Problem(file, _format_loc(loc), f"expected a list of at least {n} item{'s' if n != 1 else ''}, got {_short(given)}"))
            continue
        text = msg[0].lower() + msg[1:]
        problems.append(Problem(file, _format_loc(loc), f"{text}, got {_short(given)}"))
    return problems


# ---------------------------------------------------------------------------------------------
# Loading


def load_rules(rules_dir: Path, parties: dict[str, PartyConfig] | None = None) -> list[RuleBase]:
    """Load every ``*.yaml``/``*.yml`` file in ``rules_dir``. Raise ConfigError with all problems."""
    rules, problems = _load_rules(Path(rules_dir), parties)
    if problems:
        raise ConfigError(problems)
    return rules


def _load_rules(
    rules_dir: Path, parties: dict[str, PartyConfig] | None, environ: dict[str, str] | None = None
) -> tuple[list[RuleBase], list[Problem]]:
    problems: list[Problem] = []
    try:
        found = rules_dir.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        return [], [Problem(str(rules_dir), "", f"cannot read the rules folder ({exc.strerror or exc})")]
    if not found:
        return [], [Problem(str(rules_dir), "", "rules folder not found")]
    files = sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("*.yml")])
    if not files:
        problems.append(Problem(str(rules_dir), "", "no rule files (*.yaml) in the rules folder"))
    rules: list[RuleBase] = []
    first_seen: dict[str, str] = {}
    for path in files:
        try:
            raw = read_yaml(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        hidden: dict[str, str] = {}
        raw, env_problems = interpolate_env(raw, str(path), environ, hidden)
        problems.extend(env_problems)
        if not isinstance(raw, dict):
            problems.append(Problem(str(path), "", f"expected a mapping with a 'rules' list, got {'an empty file' if raw is None else type(raw).__name__}"))
            continue
        try:
            parsed = RulesFile.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_without_unset_env(_problems_from_validation(exc, str(path), RulesFile, hidden), env_problems))
            continue
        for i, rule in enumerate(parsed.rules):
            where = f"rules[{i}]"
            if rule.name in first_seen:
                problems.append(Problem(str(path), f"{where}.name", f"rule name {rule.name!r} is already used in {first_seen[rule.name]}"))
            first_seen.setdefault(rule.name, f"{path.name}")
            if parties is not None:
                for j, party in enumerate(rule.scope.parties):
                    if party not in parties:
                        problems.append(Problem(str(path), f"{where}.scope.parties[{j}]", _undefined_party(party, parties)))
            rules.append(rule)
    return rules, problems


def _without_unset_env(problems: list[Problem], env_problems: list[Problem]) -> list[Problem]:
    """Drop what a value left empty by an unset ``${VAR}`` caused: the unset variable is the problem."""
    unset = {p.where for p in env_problems}
    return [p for p in problems if p.where not in unset]


def undefined_references(config: Config, rules: list[RuleBase], *, party: str | None, rule: str | None) -> dict[str, str]:
    """What a silence names that is not configured, by matcher: a silence on a typo would hold
    back nothing."""
    problems = {}
    if party is not None and party not in config.parties:
        problems["party"] = _undefined_party(party, config.parties)
    if rule is not None and rule not in {r.name for r in rules}:
        problems["rule"] = f"rule {rule!r} is not defined in {config.rules_dir} (defined: {', '.join(sorted(r.name for r in rules)) or 'none'})"
    return problems


def _undefined_party(party: str, parties: dict[str, PartyConfig]) -> str:
    known = ", ".join(sorted(parties)) or "none are configured"
    return f"party {party!r} is not defined under 'parties' (defined: {known})"


#: The embedded default: the config.yaml that ships beside the package.
PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
CONFIG_ENV = "ANOMALY_CONFIG"


def default_config_path(environ: dict[str, str] | None = None) -> Path:
    """The config.yaml to use when none is named: ``$ANOMALY_CONFIG``, else ``./config.yaml``,
    else the project's embedded default."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    here = Path("config.yaml")
    return here if here.exists() else PROJECT_CONFIG


def load_config(path: str | Path, *, environ: dict[str, str] | None = None) -> tuple[Config, list[RuleBase]]:
    """Load config.yaml and the rules it points to. Raise ConfigError listing every problem."""
    path = Path(path).resolve()
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem(str(path), "", f"expected a mapping of settings, got {type(raw).__name__}")])
    hidden: dict[str, str] = {}
    raw, problems = interpolate_env(raw, str(path), environ, hidden)
    try:
        config = Config.model_validate(raw, context={"base_dir": str(path.parent)})
    except ValidationError as exc:
        problems.extend(_without_unset_env(_problems_from_validation(exc, str(path), Config, hidden), problems))
        config = None
    if config is not None:
        problems.extend(_cross_check(config, str(path)))
        rules_dir = Path(config.rules_dir)
    else:  # still check the rules, so that every problem is reported at once
        named = raw.get("rules_dir")
        rules_dir = path.parent / (named if isinstance(named, str) and named else "rules")
    rules, rule_problems = _load_rules(rules_dir, config.parties if config is not None else None, environ)
    problems.extend(rule_problems)
    if config is not None and not rule_problems:  # with a broken rules file, a named rule may just be unread
        problems.extend(
            Problem(str(path), f"alerts.silences[{i}].{name}", message)
            for i, silence in enumerate(config.alerts.silences)
            for name, message in undefined_references(config, rules, party=silence.party, rule=silence.rule).items()
        )
    if config is not None and not config.detection.forest.enabled:
        problems.extend(
            Problem(str(path), "detection.forest.enabled", f"rule {rule.name!r} uses the isolation forest: set it to true, or disable the rule")
            for rule in rules
            if rule.enabled and (rule.type == "isolation_forest" or rule.forest.mode != "ignore")
        )
    if problems:
        raise ConfigError(_hidden_problems(problems, hidden))
    return config, rules


def resolve_sink_name(name: str, file: str | Path) -> str:
    """A sink's name as config writes it, in the form the sinks carry: ``jsonl:PATH`` with PATH
    relative to the config ``file`` made absolute; every other name as it is."""
    if not name.startswith("jsonl:"):
        return name
    path = Path(name.removeprefix("jsonl:")).expanduser()
    return f"jsonl:{path if path.is_absolute() else (Path(file).parent / path).resolve()}"


def _sink_references(config: Config, file: str) -> list[Problem]:
    """Every sink a route or ``default_sinks`` names is configured; every party a route names is."""
    names = [sink.name for sink in config.alerts.sinks]
    problems = []

    def check(where: str, name: str) -> None:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(Problem(file, where, f"no configured alert sink is named {name!r}; {hint}configured: {', '.join(names)}"))

    for i, route in enumerate(config.alerts.routes):
        for j, name in enumerate(route.sinks):
            check(f"alerts.routes[{i}].sinks[{j}]", name)
        for j, party in enumerate(route.party):
            if party not in config.parties:
                problems.append(Problem(file, f"alerts.routes[{i}].party[{j}]", _undefined_party(party, config.parties)))
    for j, name in enumerate(config.alerts.default_sinks):
        check(f"alerts.default_sinks[{j}]", name)
    return problems


def _cross_check(config: Config, file: str) -> list[Problem]:
    problems = _sink_references(config, file)
    names: dict[str, int] = {}
    for i, source in enumerate(config.sources):
        if source.name in names:
            problems.append(Problem(file, f"sources[{i}].name", f"source name {source.name!r} is already used by sources[{names[source.name]}]"))
        names.setdefault(source.name, i)
    own = config.ownership
    if own.default_party and own.default_party not in config.parties:
        problems.append(Problem(file, "ownership.default_party", _undefined_party(own.default_party, config.parties)))
    seen: dict[tuple, int] = {}
    for i, assignment in enumerate(own.assignments):
        key = (assignment.account_id, assignment.campaign_id)
        if key in seen:
            problems.append(Problem(file, f"ownership.assignments[{i}]", f"account {key[0]!r}{'' if key[1] is None else f' campaign {key[1]!r}'} is already assigned in ownership.assignments[{seen[key]}]"))
        seen.setdefault(key, i)
        for j, period in enumerate(assignment.history):
            if period.party not in config.parties:
                problems.append(Problem(file, f"ownership.assignments[{i}].history[{j}].party", _undefined_party(period.party, config.parties)))
    if config.settlement is not None:
        for bearer, split in config.settlement.shares.items():
            named = {f"settlement.shares.{bearer}": bearer, **{f"settlement.shares.{bearer}.{party}": party for party in split}}
            problems.extend(Problem(file, where, _undefined_party(party, config.parties)) for where, party in named.items() if party not in config.parties)
    domains: dict[str, str] = {}
    for key, party in config.parties.items():
        for j, domain in enumerate(party.domains):
            if domain in domains:
                problems.append(Problem(file, f"parties.{key}.domains[{j}]", f"domain {domain!r} already belongs to party {domains[domain]!r}"))
            domains.setdefault(domain, key)
    return problems
