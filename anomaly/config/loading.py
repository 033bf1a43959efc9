"""Loading config.yaml and rules/*.yaml: every problem at once, and the checks across settings that
no single model can make (names that must be defined, names used twice)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from anomaly.config.errors import _hidden_problems, _problems_from_validation, at_rules
from anomaly.config.model import Config
from anomaly.config.parties import PartyConfig
from anomaly.config.rules import RuleBase, RulesFile
from anomaly.config.yamlio import interpolate_env, read_yaml, read_yaml_lines
from anomaly.errors import ConfigError, Problem
from anomaly.redaction import remember


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
            raw, lines = read_yaml_lines(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        hidden: dict[str, str] = {}
        raw, env_problems = interpolate_env(raw, str(path), environ, hidden)
        if not isinstance(raw, dict):
            problems.extend(env_problems)
            problems.append(Problem(str(path), "", f"expected a mapping with a 'rules' list, got {'an empty file' if raw is None else type(raw).__name__}"))
            continue
        found = list(env_problems)
        try:
            parsed = RulesFile.model_validate(raw)
        except ValidationError as exc:
            found.extend(_without_unset_env(_problems_from_validation(exc, str(path), RulesFile, hidden), env_problems))
            problems.extend(at_rules(found, str(path), raw, lines))
            continue
        for i, rule in enumerate(parsed.rules):
            where = f"rules[{i}]"
            line = lines.get(("rules", i, "name"))
            if rule.name in first_seen:
                found.append(Problem(str(path), f"{where}.name", f"the name is already used by the rule on {first_seen[rule.name]}"))
            first_seen.setdefault(rule.name, f"line {line} of {path.name}")
            if parties is not None:
                for j, party in enumerate(rule.scope.parties):
                    if party not in parties:
                        found.append(Problem(str(path), f"{where}.scope.parties[{j}]", _undefined_party(party, parties)))
            rules.append(rule)
        problems.extend(at_rules(found, str(path), raw, lines))
    return rules, problems


def rule_problems(rules_dir: Path, found: dict[str, list[tuple[str, str]]]) -> list[Problem]:
    """Problems found in loaded rules, located in their files as a load's are: ``found`` maps a
    rule's name to (a path within the rule, a message), e.g. ``("scope.accounts[0]", "…")``,
    which becomes ``rules/x.yaml: line 16, rule r: scope.accounts[0]: …``."""
    problems: list[Problem] = []
    if not found:
        return problems
    for path in sorted([*Path(rules_dir).glob("*.yaml"), *Path(rules_dir).glob("*.yml")]):
        raw, lines = read_yaml_lines(path)
        here = []
        for i, item in enumerate(raw.get("rules") or [] if isinstance(raw, dict) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            here.extend(Problem(str(path), f"rules[{i}].{where}", message) for where, message in found.get(name, []))
        problems.extend(at_rules(here, str(path), raw, lines))
    return problems


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
PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"
CONFIG_ENV = "ANOMALY_CONFIG"


def default_config_path(environ: dict[str, str] | None = None) -> Path:
    """The config.yaml to use when none is named: ``$ANOMALY_CONFIG``, else ``./config.yaml``,
    else the project's embedded default."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    here = Path("config.yaml")
    return here if here.exists() else PROJECT_CONFIG


#: What a config the service runs on lacks without a source.
NO_SOURCE = "at least one source is needed (a csv source with its metrics files, or a google_ads, microsoft_ads or meta_ads source), got none"


def load_config(
    path: str | Path, *, environ: dict[str, str] | None = None, require_sources: bool = False, rules_dir: str | Path | None = None
) -> tuple[Config, list[RuleBase]]:
    """Load config.yaml and the rules it points to (or those in ``rules_dir``: a folder under trial,
    checked against the config as the configured one would be). Raise ConfigError listing every
    problem.

    With ``require_sources`` the config must name at least one source, as every config the service
    runs on must (``anomaly check``, ``run``, ``serve`` and ``demo`` ask for it): an empty
    config.yaml is no config. A replay of frames held in memory (a benchmark, a test, a notebook), or
    a command that only reads the store, needs none."""
    path = Path(path).resolve()
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem(str(path), "", f"expected a mapping of settings, got {type(raw).__name__}")])
    hidden: dict[str, str] = {}
    raw, problems = interpolate_env(raw, str(path), environ, hidden)
    if require_sources and raw.get("sources", []) == []:  # anything else that is not a list of sources is the model's to report
        problems.append(Problem(str(path), "sources", NO_SOURCE))
    try:
        # the values read from the environment: a secret that must come from there is checked against them
        config = Config.model_validate(raw, context={"base_dir": str(path.parent), "environment": hidden})
    except ValidationError as exc:
        problems.extend(_without_unset_env(_problems_from_validation(exc, str(path), Config, hidden), problems))
        config = None
    if config is not None:
        problems.extend(_cross_check(config, str(path)))
    if rules_dir is not None:
        rules_dir = Path(rules_dir).resolve()
        if config is not None:
            config = config.model_copy(update={"rules_dir": str(rules_dir)})
    elif config is not None:
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
    remember(config_secrets(config, hidden))
    return config, rules


#: the shortest value that counts as a secret: a shorter one (a port, a flag) is none, and
#: replacing it everywhere would garble the text
MIN_SECRET_LENGTH = 6


def config_secrets(config: Config, environment: dict[str, str] | None = None) -> dict[str, str]:
    """Every secret of ``config`` with what stands for it in text. ``environment`` maps the values
    read from the environment to their ``${VAR}``: those inside a secret setting are secrets
    themselves. A secret setting written in the file is a secret whole, shown as its path; except
    the store's URL, which messages show with its password hidden (a SQLite URL is a file name)."""
    environment = environment or {}
    secrets: dict[str, str] = {}
    for where, value in _secret_settings(config, ""):
        inside = [v for v in environment if len(v) >= MIN_SECRET_LENGTH and v in value]
        secrets.update((v, environment[v]) for v in inside)
        if not inside and len(value.strip()) >= MIN_SECRET_LENGTH and where != "store.url":
            secrets[value] = f"<{where}>"
    return secrets


def _secret_settings(node: Any, where: str):
    """(path, value) of every SecretStr under ``node``."""
    if isinstance(node, SecretStr):
        yield where, node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secret_settings(getattr(node, name), f"{where}.{name}" if where else name)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _secret_settings(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _secret_settings(item, f"{where}.{key}")


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
    actors: dict[str, tuple[str, str]] = {}  # a Meta user or business, folded, and the party and list naming it
    for key, party in config.parties.items():
        for kind in ("meta_users", "meta_businesses"):
            for j, actor in enumerate(getattr(party, kind)):
                folded = actor.casefold()
                if folded in actors:
                    owner, where = actors[folded]
                    problems.append(Problem(file, f"parties.{key}.{kind}[{j}]", f"{actor!r} is already named by party {owner!r} ({where})"))
                actors.setdefault(folded, (key, kind))
    return problems
