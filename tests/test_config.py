"""config.yaml and rules/*.yaml: one tiny bad file per error class, the whole message asserted.

Each case writes a ``config.yaml`` and a ``rules/`` folder to ``tmp_path``. Expected lines are
written relative to that folder (``config.yaml: stroe: ...``) and prefixed with its absolute path,
because a ConfigError names every file absolutely.
"""

from __future__ import annotations

import datetime as dt
import textwrap
import typing
from pathlib import Path

import pytest
from pydantic import AllowInfNan, BaseModel, Strict, ValidationError

from anomaly import cli
from anomaly.config import (
    RULE_TYPES,
    Config,
    ConsoleSinkConfig,
    CplRatioRule,
    DetectionConfig,
    ForestGate,
    LeadShortfallRule,
    RulesFile,
    SpendRatioRule,
    Scope,
    ThresholdRule,
    interpolate_env,
    load_config,
    load_rules,
    read_yaml,
)
from anomaly.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

ONE_RULE = {"a.yaml": "rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n"}
PARTY_A = "parties:\n  a: {name: Agency A}\n"
CONFIG_KEYS = "alerts, detection, handoff, ownership, parties, rules_dir, service, settlement, sources, store"
RULE_KEYS = (  # a cpl_ratio rule's
    "after_changes, after_ownership_change, baseline_lag_days, critical, description, enabled, family, forest, max_p_value, "
    "min_expected_leads, min_spend, name, scope, type, use_clicks, warning, window_days"
)
RULE_TYPE_NAMES = "'cpl_ratio', 'lead_shortfall', 'threshold', 'spend_ratio', 'cpc_ratio', 'isolation_forest'"
WITH_FOREST = "detection:\n  forest:\n    enabled: true\n"


def write_case(root: Path, config: str | bytes, rules: dict[str, str] | None = ONE_RULE, rules_dir: str = "rules") -> Path:
    """Write ``config.yaml`` and (unless ``rules`` is None) a rules folder; return the config path."""
    root = root.resolve()
    path = root / "config.yaml"
    path.write_bytes(config if isinstance(config, bytes) else textwrap.dedent(config).encode("utf-8"))
    if rules is not None:
        (root / rules_dir).mkdir()
        for name, text in rules.items():
            (root / rules_dir / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def expected(root: Path, lines: list[str]) -> str:
    """The whole ConfigError text: each line is ``file-relative-to-root: path: message``."""
    return "\n".join(f"{root.resolve()}/{line}" for line in lines)


def load_error(path: Path, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, **kwargs)
    return excinfo.value


# ----------------------------------------------------------------------------------------------
# config.yaml: one bad file per error class


CONFIG_ERRORS = [
    pytest.param(
        "stroe:\n  url: sqlite:///a.db\n",
        [f"config.yaml: stroe: unknown key; did you mean 'store'? expected one of: {CONFIG_KEYS}"],
        id="unknown-key-typo",
    ),
    pytest.param(
        "colour: blue\n",
        [f"config.yaml: colour: unknown key; expected one of: {CONFIG_KEYS}"],
        id="unknown-key-no-close-match",
    ),
    pytest.param(
        """\
        detection:
          baseline:
            half_lfe_days: 3
        """,
        [
            "config.yaml: detection.baseline.half_lfe_days: unknown key; did you mean 'half_life_days'? expected one of: "
            "elevated_p_value, elevated_ratio, half_life_days, max_excluded_days, min_days, min_leads, "
            "new_spend_level_days, probation_days, shrink_leads, spend_spread, volume_elasticity, weekday_half_life_weeks, weekday_prior_weeks"
        ],
        id="unknown-key-nested",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], lookbak_days: 3}\n",
        [
            "config.yaml: sources[0].lookbak_days: unknown key; did you mean 'lookback_days'? expected one of: "
            "changes, currency, history_days, lookback_days, max_row_clicks, max_row_impressions, max_row_leads, "
            "max_row_spend, metrics, name, platform, schedule, type"
        ],
        id="unknown-key-in-source",
    ),
    pytest.param(
        "alerts:\n  sinks:\n    - {type: jsonl, pth: alerts.jsonl}\n",
        [
            "config.yaml: alerts.sinks[0].path: required key is missing",
            "config.yaml: alerts.sinks[0].pth: unknown key; did you mean 'path'? expected one of: path, type",
        ],
        id="unknown-key-in-sink",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s}\n",
        ["config.yaml: sources[0].metrics: required key is missing"],
        id="missing-required-key",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: []}\n",
        ["config.yaml: sources[0].metrics: expected a list of at least 1 item, got []"],
        id="empty-required-list",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], lookback_days: a week}\n",
        ["config.yaml: sources[0].lookback_days: expected a whole number, got the text 'a week'"],
        id="wrong-type-int",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], lookback_days: true}\n",
        ["config.yaml: sources[0].lookback_days: expected a whole number, got true (true and false are not numbers)"],
        id="boolean-as-lookback-days",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], history_days: 30.0}\n",
        ["config.yaml: sources[0].history_days: expected a whole number, got 30.0"],
        id="decimal-as-whole-number",
    ),
    pytest.param(
        "sources:\n  - {type: google_ads, name: ads, customer_ids: ['1234567890'], timeout_seconds: .inf, max_attempts: true}\n",
        [
            "config.yaml: sources[0].timeout_seconds: expected a finite number, got infinity (.inf, or a number too large to hold)",
            "config.yaml: sources[0].max_attempts: expected a whole number, got true (true and false are not numbers)",
        ],
        id="google-ads-numbers",
    ),
    pytest.param(
        "detection:\n  baseline: {half_life_days: .inf, min_leads: .nan, weekday_prior_weeks: 1e400}\n  forest: {random_state: false}\n",
        [
            "config.yaml: detection.baseline.half_life_days: expected a finite number, got infinity (.inf, or a number too large to hold)",
            "config.yaml: detection.baseline.min_leads: expected a finite number, got NaN (not a number)",
            "config.yaml: detection.baseline.weekday_prior_weeks: expected a finite number, got infinity (.inf, or a number too large to hold)",
            "config.yaml: detection.forest.random_state: expected a whole number, got false (true and false are not numbers)",
        ],
        id="detection-numbers",
    ),
    pytest.param(
        "alerts:\n  repeat_every_hours: true\n  excess_steps: [1000, -.inf]\n",
        [
            "config.yaml: alerts.repeat_every_hours: expected a number, got true (true and false are not numbers)",
            "config.yaml: alerts.excess_steps[1]: expected a finite number, got minus infinity (.inf, or a number too large to hold)",
        ],
        id="alerts-numbers",
    ),
    pytest.param(
        PARTY_A + "settlement:\n  shares: {a: {a: true}}\nservice:\n  deliver_every_minutes: 5.0\n",
        [
            "config.yaml: service.deliver_every_minutes: expected a whole number, got 5.0",
            "config.yaml: settlement.shares.a.a: expected a number, got true (true and false are not numbers)",
        ],
        id="service-and-settlement-numbers",
    ),
    pytest.param(
        "detection:\n  forest:\n    enabled: sometimes\n",
        ["config.yaml: detection.forest.enabled: input should be a valid boolean, unable to interpret input, got 'sometimes'"],
        id="wrong-type-bool",
    ),
    pytest.param(
        "sources: csv\n",
        ["config.yaml: sources: input should be a valid list, got 'csv'"],
        id="wrong-type-list",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], lookback_days: 91}\n",
        ["config.yaml: sources[0].lookback_days: input should be less than or equal to 90, got 91"],
        id="out-of-range-above",
    ),
    pytest.param(
        "detection:\n  forest:\n    n_estimators: 0\n",
        ["config.yaml: detection.forest.n_estimators: input should be greater than or equal to 1, got 0"],
        id="out-of-range-below",
    ),
    pytest.param(
        "detection:\n  baseline:\n    elevated_ratio: 1\n",
        ["config.yaml: detection.baseline.elevated_ratio: input should be greater than 1, got 1"],
        id="out-of-range-exclusive",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], currency: usd}\n",
        ["config.yaml: sources[0].currency: string should match pattern '^[A-Z]{3}$', got 'usd'"],
        id="bad-currency",
    ),
    pytest.param(
        "sources:\n  - {type: bigquery, name: s}\n",
        ["config.yaml: sources[0].type: expected one of 'csv', 'google_ads', 'meta_ads', 'microsoft_ads', got 'bigquery'"],
        id="unknown-source-type",
    ),
    pytest.param(
        "sources:\n  - {name: s, metrics: [m.csv]}\n",
        ["config.yaml: sources[0].type: required key is missing; expected one of 'csv', 'google_ads', 'meta_ads', 'microsoft_ads'"],
        id="missing-source-type",
    ),
    pytest.param(
        "alerts:\n  sinks:\n    - {type: console}\n    - {type: teams, channel: '#ads'}\n",
        ["config.yaml: alerts.sinks[1].type: expected one of 'console', 'jsonl', 'slack', 'slack_webhook', got 'teams'"],
        id="unknown-sink-type",
    ),
    pytest.param(
        "alerts:\n  sinks:\n    - {path: alerts.jsonl}\n",
        ["config.yaml: alerts.sinks[0].type: required key is missing; expected one of 'console', 'jsonl', 'slack', 'slack_webhook'"],
        id="missing-sink-type",
    ),
    pytest.param(
        "store:\n  url: mysql://ads:s3cret@db/ads\n",
        ["config.yaml: store.url: expected a database URL starting sqlite:/// or postgresql://, got one starting 'mysql://'"],
        id="bad-store-url-scheme",
    ),
    pytest.param(
        "store:\n  url: s3cret\n",
        ["config.yaml: store.url: expected a database URL starting sqlite:/// or postgresql://, got a value without '://'"],
        id="bad-store-url-no-scheme",
    ),
    pytest.param(
        "store:\n  url: postgresql://ads:${DB_PASSWORD}@db/ads\n",
        ["config.yaml: store.url: environment variable DB_PASSWORD is not set"],
        id="env-var-not-set",
    ),
    pytest.param(
        "parties:\n  a: {name: '${A_NAME}'}\n  b: {name: '${B_NAME}'}\n",
        [
            "config.yaml: parties.a.name: environment variable A_NAME is not set",
            "config.yaml: parties.b.name: environment variable B_NAME is not set",
        ],
        id="env-vars-not-set-each-reported",
    ),
    pytest.param(
        "store:\n  url: sqlite:///a.db\nrules_dir: rules\nstore:\n  url: sqlite:///b.db\n",
        ["config.yaml: line 4, column 1: invalid YAML: key 'store' appears twice in one mapping (first on line 1)"],
        id="duplicate-key",
    ),
    pytest.param(
        "parties:\n  a:\n    name: A\n    domains: [a.com]\n    name: B\n",
        ["config.yaml: line 5, column 5: invalid YAML: key 'name' appears twice in one mapping (first on line 3)"],
        id="duplicate-key-nested",
    ),
    pytest.param(
        "store:\n  url: [a, b\nrules_dir: rules\n",
        ["config.yaml: line 2: the '[' on this line is missing its closing ']', or a ',' between two of its items"],
        id="yaml-syntax-unclosed-list",
    ),
    pytest.param(
        "store:\n url: a\n  x: b\n",
        ["config.yaml: line 3: a ':' where no key can begin: this line is indented deeper than the key above it, or a value holds ': ' (put that value in quotes)"],
        id="yaml-syntax-bad-indent",
    ),
    pytest.param(
        "store:\n\turl: a\n",
        ["config.yaml: line 2: a tab character: YAML indents with spaces only"],
        id="yaml-syntax-tab",
    ),
    pytest.param(
        b"store: {url: 'sqlite:///caf\xe9.db'}\n",
        ["config.yaml: not valid UTF-8 (byte 0xe9 at offset 27)"],
        id="not-utf8",
    ),
    pytest.param(
        PARTY_A + "settlement:\n  shares:\n    a: {a: 80, b: 20}\n",
        ["config.yaml: settlement.shares.a.b: party 'b' is not defined under 'parties' (defined: a)"],
        id="settlement-undefined-party",
    ),
    pytest.param(
        "parties:\n  a: {name: A}\n  b: {name: B}\nsettlement:\n  shares:\n    a: {a: 80, b: 30}\n",
        ["config.yaml: settlement.shares.a: expected percentages that add up to 100, got 110"],
        id="settlement-shares-not-100",
    ),
    pytest.param(
        PARTY_A + "settlement:\n  bears: whoever_changed\n  shares: {a: {a: 0}}\n",
        [
            "config.yaml: settlement.bears: input should be 'managing_party' or 'changed_by', got 'whoever_changed'",
            "config.yaml: settlement.shares.a.a: input should be greater than 0, got 0",
        ],
        id="settlement-bad-rule-and-share",
    ),
    pytest.param("- store\n- rules_dir\n", ["config.yaml: expected a mapping of settings, got list"], id="top-level-list"),
    pytest.param("store\n", ["config.yaml: expected a mapping of settings, got str"], id="top-level-scalar"),
    pytest.param(
        PARTY_A + "ownership:\n  default_party: b\n",
        ["config.yaml: ownership.default_party: party 'b' is not defined under 'parties' (defined: a)"],
        id="undefined-default-party",
    ),
    pytest.param(
        """\
        ownership:
          assignments:
            - account_id: '1001'
              history: [{party: agency, since: 2026-01-01}]
        """,
        [
            "config.yaml: ownership.assignments[0].history[0].party: party 'agency' is not defined under 'parties' "
            "(defined: none are configured)"
        ],
        id="undefined-party-in-history-no-parties",
    ),
    pytest.param(
        """\
        parties:
          a: {name: Agency A}
        ownership:
          assignments:
            - account_id: '1001'
              history:
                - {party: a, since: 2026-01-01}
                - {party: partner, since: 2026-03-01}
        """,
        [
            "config.yaml: ownership.assignments[0].history[1].party: party 'partner' is not defined under 'parties' "
            "(defined: a)"
        ],
        id="undefined-party-in-history",
    ),
    pytest.param(
        """\
        parties:
          a: {name: Agency A}
        ownership:
          assignments:
            - account_id: '1001'
              history:
                - {party: a, since: 2026-03-01}
                - {party: a, since: 2026-01-01}
        """,
        ["config.yaml: ownership.assignments[0].history: expected 'since' dates in increasing order, got 2026-03-01 then 2026-01-01"],
        id="since-decreasing",
    ),
    pytest.param(
        """\
        parties:
          a: {name: Agency A}
        ownership:
          assignments:
            - account_id: '1001'
              history:
                - {party: a, since: 2026-03-01}
                - {party: a, since: 2026-03-01}
        """,
        ["config.yaml: ownership.assignments[0].history: expected 'since' dates in increasing order, got 2026-03-01 then 2026-03-01"],
        id="since-repeated",
    ),
    pytest.param(
        PARTY_A + "ownership:\n  assignments:\n    - {account_id: '1001', history: [{party: a, since: last week}]}\n",
        [
            "config.yaml: ownership.assignments[0].history[0].since: input should be a valid date or datetime, "
            "input is too short, got 'last week'"
        ],
        id="since-not-a-date",
    ),
    pytest.param(
        PARTY_A + "ownership:\n  assignments:\n    - {account_id: '1001', history: []}\n",
        ["config.yaml: ownership.assignments[0].history: expected a list of at least 1 item, got []"],
        id="empty-history",
    ),
    pytest.param(
        """\
        parties:
          a: {name: Agency A}
        ownership:
          assignments:
            - {account_id: '1001', history: [{party: a, since: 2026-01-01}]}
            - {account_id: '1001', campaign_id: '55', history: [{party: a, since: 2026-01-01}]}
            - {account_id: '1001', history: [{party: a, since: 2026-02-01}]}
            - {account_id: '1001', campaign_id: '55', history: [{party: a, since: 2026-02-01}]}
        """,
        [
            "config.yaml: ownership.assignments[2]: account '1001' is already assigned in ownership.assignments[0]",
            "config.yaml: ownership.assignments[3]: account '1001' campaign '55' is already assigned in ownership.assignments[1]",
        ],
        id="duplicate-ownership-assignment",
    ),
    pytest.param(
        "sources:\n  - {type: csv, name: ads, metrics: [a.csv]}\n  - {type: csv, name: ads, metrics: [b.csv]}\n",
        ["config.yaml: sources[1].name: source name 'ads' is already used by sources[0]"],
        id="duplicate-source-name",
    ),
    pytest.param(
        "parties:\n  a: {name: A, domains: [shared.com]}\n  b: {name: B, domains: [b.com, Shared.COM]}\n",
        ["config.yaml: parties.b.domains[1]: domain 'shared.com' already belongs to party 'a'"],
        id="domain-claimed-twice",
    ),
    pytest.param(
        "parties:\n  a: {name: A, domains: [a.com, '@a.com']}\n",
        ["config.yaml: parties.a.domains: expected email domains like 'agency.com', got '@a.com'"],
        id="bad-domain",
    ),
]


def test_config_file_not_found(tmp_path: Path) -> None:
    assert str(load_error(tmp_path / "nope.yaml")) == expected(tmp_path, ["nope.yaml: file not found"])


# ----------------------------------------------------------------------------------------------
# rules/*.yaml: one bad file per error class (config.yaml is empty unless the case needs parties)


def rule(text: str) -> dict[str, str]:
    return {"a.yaml": "rules:\n" + textwrap.indent(textwrap.dedent(text), "  ")}


RULE_ERRORS = [
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratoi, warning: 2}\n"),
        [f"rules/a.yaml: line 2, rule r1: type: expected one of {RULE_TYPE_NAMES}, got 'cpl_ratoi'"],
        id="unknown-rule-type",
    ),
    pytest.param(
        "", rule("- {name: r1, warning: 2}\n"),
        [f"rules/a.yaml: line 2, rule r1: type: required key is missing; expected one of {RULE_TYPE_NAMES}"],
        id="missing-rule-type",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, windw_days: 3}\n"),
        [f"rules/a.yaml: line 2, rule r1: windw_days: unknown key; did you mean 'window_days'? expected one of: {RULE_KEYS}"],
        id="unknown-key-typo",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, metric: cpl, warning: 400, directon: below}\n"),
        [
            "rules/a.yaml: line 2, rule r1: directon: unknown key; did you mean 'direction'? expected one of: "
            "after_changes, after_ownership_change, baseline_lag_days, critical, description, direction, enabled, family, forest, max_p_value, metric, "
            "min_expected_leads, min_spend, name, scope, type, warning, window_days"
        ],
        id="unknown-key-typo-type-specific",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, after_ownership_change: {within_day: 7}}\n"),
        [
            "rules/a.yaml: line 2, rule r1: after_ownership_change.within_day: unknown key; did you mean 'within_days'? "
            "expected one of: critical, max_p_value, min_expected_leads, min_spend, warning, within_days"
        ],
        id="unknown-key-in-after-ownership-change",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: required key is missing"],
        id="missing-warning",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, warning: 400}\n"),
        ["rules/a.yaml: line 2, rule r1: metric: required key is missing"],
        id="threshold-missing-metric",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, metric: cost, warning: 400}\n"),
        [
            "rules/a.yaml: line 2, rule r1: metric: input should be 'cpl', 'cpc', 'ctr', 'cvr', 'spend', 'leads', 'clicks' "
            "or 'impressions', got 'cost'"
        ],
        id="threshold-unknown-metric",
    ),
    pytest.param(
        "", rule("- {name: CPL spike, type: cpl_ratio, warning: 2}\n"),
        ["rules/a.yaml: line 2, rule 'CPL spike': name: string should match pattern '^[a-z0-9][a-z0-9_.-]{0,63}$', got 'CPL spike'"],
        id="bad-rule-name",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, window_days: 29}\n"),
        ["rules/a.yaml: line 2, rule r1: window_days: input should be less than or equal to 28, got 29"],
        id="window-out-of-range",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 1}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: must be a ratio > 1, got 1"],
        id="cpl-ratio-warning-not-above-1",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, critical: 0.5}\n"),
        ["rules/a.yaml: line 2, rule r1: critical: must be a ratio > 1, got 0.5"],
        id="cpl-ratio-critical-not-above-1",
    ),
    pytest.param(
        "", rule("- {name: r1, type: lead_shortfall, warning: 1}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: must be a fraction of the expected leads, >= 0 and < 1, got 1"],
        id="lead-shortfall-warning-not-below-1",
    ),
    pytest.param(
        "", rule("- {name: r1, type: lead_shortfall, warning: -0.1}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: must be a fraction of the expected leads, >= 0 and < 1, got -0.1"],
        id="lead-shortfall-warning-negative",
    ),
    pytest.param(
        "", rule("- {name: r1, type: isolation_forest, warning: 1}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: must be a score > 0 and < 1, got 1"],
        id="isolation-forest-warning-not-below-1",
    ),
    pytest.param(
        "", rule("- {name: r1, type: isolation_forest, warning: 0}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: must be a score > 0 and < 1, got 0"],
        id="isolation-forest-warning-zero",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, metric: cpl, warning: -5}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: must be >= 0, got -5"],
        id="threshold-warning-negative",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 3, critical: 2}\n"),
        ["rules/a.yaml: line 2, rule r1: critical: must be at least warning (3), got 2"],
        id="critical-below-warning-for-above-rule",
    ),
    pytest.param(
        "", rule("- {name: r1, type: lead_shortfall, warning: 0.2, critical: 0.5}\n"),
        ["rules/a.yaml: line 2, rule r1: critical: must be at most warning (0.2), got 0.5"],
        id="critical-above-warning-for-below-rule",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, metric: leads, direction: below, warning: 5, critical: 10}\n"),
        ["rules/a.yaml: line 2, rule r1: critical: must be at most warning (5), got 10"],
        id="critical-above-warning-for-threshold-below",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, metric: cpl, warning: 400, critical: 300}\n"),
        ["rules/a.yaml: line 2, rule r1: critical: must be at least warning (400), got 300"],
        id="critical-below-warning-for-threshold-above",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 3, critical: 2, after_ownership_change: {within_days: 7}}\n"),
        ["rules/a.yaml: line 2, rule r1: critical: must be at least warning (3), got 2"],
        id="critical-below-warning-reported-once-with-override-block",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, critical: 4, after_ownership_change: {warning: 0.5}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.warning: must be a ratio > 1, got 0.5"],
        id="after-ownership-change-warning-out-of-range",
    ),
    pytest.param(
        "", rule("- {name: r1, type: lead_shortfall, warning: 0.2, after_ownership_change: {critical: 1.5}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.critical: must be a fraction of the expected leads, >= 0 and < 1, got 1.5"],
        id="after-ownership-change-critical-out-of-range",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, critical: 4, after_ownership_change: {warning: 5}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.warning: must be at most critical (4), got 5"],
        id="after-ownership-change-warning-beyond-inherited-critical",
    ),
    pytest.param(
        "", rule("- {name: r1, type: lead_shortfall, warning: 0.3, critical: 0.1, after_ownership_change: {warning: 0.05}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.warning: must be at least critical (0.1), got 0.05"],
        id="after-ownership-change-warning-beyond-inherited-critical-below",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, critical: 4, after_ownership_change: {critical: 1.5}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.critical: must be at least warning (2), got 1.5"],
        id="after-ownership-change-critical-below-inherited-warning",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, after_ownership_change: {warning: 3, critical: 2.5}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.critical: must be at least warning (3), got 2.5"],
        id="after-ownership-change-critical-below-its-warning",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, after_ownership_change: {within_days: 0}}\n"),
        ["rules/a.yaml: line 2, rule r1: after_ownership_change.within_days: input should be greater than or equal to 1, got 0"],
        id="after-ownership-change-within-days-out-of-range",
    ),
    pytest.param(
        "", rule("- {name: r1, type: isolation_forest, warning: 0.99, forest: {mode: require, min_score: 0.9}}\n"),
        ["rules/a.yaml: line 2, rule r1: forest.mode: expected 'ignore' (an isolation_forest rule is the score itself), got 'require'"],
        id="forest-gate-on-isolation-forest",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, forest: {mode: always}}\n"),
        ["rules/a.yaml: line 2, rule r1: forest.mode: input should be 'ignore', 'require' or 'escalate', got 'always'"],
        id="unknown-forest-mode",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, forest: {mode: escalate, min_score: 1}}\n"),
        ["rules/a.yaml: line 2, rule r1: forest.min_score: input should be less than 1, got 1"],
        id="forest-min-score-out-of-range",
    ),
    pytest.param(
        "",
        {
            "a.yaml": "rules:\n  - {name: cpl-spike, type: cpl_ratio, warning: 2}\n",
            "b.yaml": "rules:\n  - {name: other, type: cpl_ratio, warning: 2}\n  - {name: cpl-spike, type: cpl_ratio, warning: 3}\n",
        },
        ["rules/b.yaml: line 3, rule cpl-spike: name: the name is already used by the rule on line 2 of a.yaml"],
        id="duplicate-rule-name-across-files",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2}\n- {name: r1, type: lead_shortfall, warning: 0.2}\n"),
        ["rules/a.yaml: line 3, rule r1: name: the name is already used by the rule on line 2 of a.yaml"],
        id="duplicate-rule-name-in-one-file",
    ),
    pytest.param(
        PARTY_A, rule("- {name: r1, type: cpl_ratio, warning: 2, scope: {parties: [a, partner]}}\n"),
        ["rules/a.yaml: line 2, rule r1: scope.parties[1]: party 'partner' is not defined under 'parties' (defined: a)"],
        id="scope-party-not-defined",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, scope: {acounts: ['1001']}}\n"),
        ["rules/a.yaml: line 2, rule r1: scope.acounts: unknown key; did you mean 'accounts'? expected one of: accounts, campaigns, parties"],
        id="unknown-key-in-scope",
    ),
    pytest.param("", {}, ["rules: no rule files (*.yaml) in the rules folder"], id="empty-rules-folder"),
    pytest.param("", {"README.md": "# rules\n"}, ["rules: no rule files (*.yaml) in the rules folder"], id="rules-folder-without-yaml"),
    pytest.param("", None, ["rules: rules folder not found"], id="missing-rules-folder"),
    pytest.param("rules_dir: my_rules\n", ONE_RULE, ["my_rules: rules folder not found"], id="missing-named-rules-folder"),
    pytest.param(
        "", {"a.yaml": "- {name: r1, type: cpl_ratio, warning: 2}\n"},
        ["rules/a.yaml: expected a mapping with a 'rules' list, got list"],
        id="rules-file-is-a-list",
    ),
    pytest.param("", {"a.yaml": "# nothing yet\n"}, ["rules/a.yaml: expected a mapping with a 'rules' list, got an empty file"], id="rules-file-empty"),
    pytest.param("", {"a.yaml": "rules: []\n"}, ["rules/a.yaml: rules: expected a list of at least 1 item, got []"], id="empty-rules-list"),
    pytest.param(
        "", {"a.yaml": "rule:\n  - {name: r1, type: cpl_ratio, warning: 2}\n"},
        [
            "rules/a.yaml: rules: required key is missing",
            "rules/a.yaml: rule: unknown key; did you mean 'rules'? expected one of: rules",
        ],
        id="rules-key-typo",
    ),
    pytest.param(
        "", {"a.yaml": "rules: [r1]\n"},
        ["rules/a.yaml: line 1, rule #1: input should be a valid dictionary or object to extract fields from, got 'r1'"],
        id="rule-not-a-mapping",
    ),
    pytest.param(
        "", {"a.yml": "rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n  - {name: r1, type: cpl_ratio, warning: 2}\n"},
        ["rules/a.yml: line 3, rule r1: name: the name is already used by the rule on line 2 of a.yml"],
        id="yml-extension-is-read",
    ),
    pytest.param(
        "", {"a.yaml": "rules:\n  - name: r1\n    name: r2\n"},
        ["rules/a.yaml: line 3, column 5: invalid YAML: key 'name' appears twice in one mapping (first on line 2)"],
        id="rules-duplicate-yaml-key",
    ),
    pytest.param(
        "", {"a.yaml": "rules:\n  - {name: r1, type: cpl_ratio, description: '${WHY}', warning: 2}\n"},
        ["rules/a.yaml: line 2, rule r1: description: environment variable WHY is not set"],
        id="rules-env-var-not-set",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, window_days: true}\n"),
        ["rules/a.yaml: line 2, rule r1: window_days: expected a whole number, got true (true and false are not numbers)"],
        id="boolean-as-window-days",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, min_spend: .inf}\n"),
        ["rules/a.yaml: line 2, rule r1: min_spend: expected a finite number, got infinity (.inf, or a number too large to hold)"],
        id="infinite-min-spend",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, min_spend: 1e400}\n"),
        ["rules/a.yaml: line 2, rule r1: min_spend: expected a finite number, got infinity (.inf, or a number too large to hold)"],
        id="min-spend-too-large-to-hold",
    ),
    pytest.param(
        "", rule("- {name: r1, type: threshold, metric: cpl, warning: .inf}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: expected a finite number, got infinity (.inf, or a number too large to hold)"],
        id="infinite-threshold",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: .nan}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: expected a finite number, got NaN (not a number)"],
        id="nan-threshold",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: true}\n"),
        ["rules/a.yaml: line 2, rule r1: warning: expected a number, got true (true and false are not numbers)"],
        id="boolean-as-threshold",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, min_spend: '50'}\n"),
        ["rules/a.yaml: line 2, rule r1: min_spend: expected a number, got the text '50'"],
        id="quoted-number",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, after_ownership_change: {within_days: true, max_p_value: .inf}}\n"),
        [
            "rules/a.yaml: line 2, rule r1: after_ownership_change.within_days: expected a whole number, got true (true and false are not numbers)",
            "rules/a.yaml: line 2, rule r1: after_ownership_change.max_p_value: expected a finite number, got infinity (.inf, or a number too large to hold)",
        ],
        id="override-numbers",
    ),
    pytest.param(
        "", rule("- {name: r1, type: spend_ratio, warning: 3, worse_ratio: .inf, explained_by: {max_budget_factor: 1e999}}\n"),
        [
            "rules/a.yaml: line 2, rule r1: worse_ratio: expected a finite number, got infinity (.inf, or a number too large to hold)",
            "rules/a.yaml: line 2, rule r1: explained_by.max_budget_factor: expected a finite number, got infinity (.inf, or a number too large to hold)",
        ],
        id="spend-rule-numbers",
    ),
    pytest.param(
        "", rule("- {name: r1, type: cpl_ratio, warning: 2, forest: {mode: require, min_score: .nan}}\n"),
        ["rules/a.yaml: line 2, rule r1: forest.min_score: expected a finite number, got NaN (not a number)"],
        id="forest-gate-number",
    ),
]


@pytest.mark.parametrize("config, rules, lines", RULE_ERRORS)
def test_rules_error(tmp_path: Path, config: str, rules: dict[str, str] | None, lines: list[str]) -> None:
    path = write_case(tmp_path, config, rules)
    assert str(load_error(path, environ={})) == expected(tmp_path, lines)


BLOCK_RULES = """\
# Cost-per-lead rules, written as partner managers write them: one key a line.
rules:
  - name: cpl-spike-1d
    type: cpl_ratio
    warning: 2.5
    critical: 4.0
    after_changes:
      - kinds: [bidding]
        warning: 5

  - name: cpl-spike-7d
    type: cpl_ratio
    window_days: 7
    warning: 1.5
    after_ownership_change:
      within_days: 28
      warning: 0.8

  - name: leads-stopped
    type: lead_shortfall
    warning: 0.15
    critical: 0.3

  - type: cpl_ratio
    warning: 2

  - name: spend-runaway
    type: spend_ratio
    warning: 3
    min_spend: 25
    scope:
      acounts: ["3307714460"]
"""


def test_a_rule_error_gives_the_line_and_the_rule_name(tmp_path: Path) -> None:
    # the line of the key at fault; for a missing key, the line where its rule (or block) begins
    path = write_case(tmp_path, "", {"cost_per_lead.yaml": BLOCK_RULES})
    assert str(load_error(path, environ={})) == expected(
        tmp_path,
        [
            "rules/cost_per_lead.yaml: line 9, rule cpl-spike-1d: after_changes[0].warning: must be at most critical (4), got 5",
            "rules/cost_per_lead.yaml: line 17, rule cpl-spike-7d: after_ownership_change.warning: must be a ratio > 1, got 0.8",
            "rules/cost_per_lead.yaml: line 22, rule leads-stopped: critical: must be at most warning (0.15), got 0.3",
            "rules/cost_per_lead.yaml: line 24, rule #4: name: required key is missing",
            "rules/cost_per_lead.yaml: line 32, rule spend-runaway: scope.acounts: unknown key; did you mean 'accounts'? "
            "expected one of: accounts, campaigns, parties",
        ],
    )


def test_a_rule_name_used_twice_gives_both_lines(tmp_path: Path) -> None:
    first = "rules:\n  - name: cpl-spike-1d\n    type: cpl_ratio\n    warning: 2.5\n"
    second = "rules:\n  - name: spend-runaway\n    type: spend_ratio\n    warning: 3\n\n  - name: cpl-spike-1d\n    type: cpl_ratio\n    warning: 3\n"
    path = write_case(tmp_path, "", {"a.yaml": first, "b.yaml": second})
    assert str(load_error(path, environ={})) == expected(
        tmp_path, ["rules/b.yaml: line 6, rule cpl-spike-1d: name: the name is already used by the rule on line 2 of a.yaml"]
    )


def _broken(text: str) -> dict[str, str]:
    return {"cost_per_lead.yaml": text}


INDENTATION = "the indentation does not line up with the lines above (a key or list item is indented differently)"

#: the common YAML syntax errors of a hand-edited rules file, in words, at the line to fix
YAML_SYNTAX_IN_WORDS = [
    pytest.param(
        "rules:\n  - name: r1\n    type: cpl_ratio\n   warning: 2\n", f"line 4: {INDENTATION}", id="key-indented-less",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    type: cpl_ratio\n    warning: 2\n   - name: r2\n", f"line 5: {INDENTATION}", id="list-item-indented-more",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    type: cpl_ratio\n    warning: 2\n  critical: 3\n", f"line 5: {INDENTATION}", id="key-at-the-list-level",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    scope:\n      accounts:\n        - '1'\n       - '2'\n", f"line 6: {INDENTATION}", id="list-items-not-aligned",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    type: cpl_ratio\n      warning: 2\n",
        "line 4: a ':' where no key can begin: this line is indented deeper than the key above it, or a value holds ': ' (put that value in quotes)",
        id="key-indented-more",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    description: Note: a spike\n    type: cpl_ratio\n",
        "line 3: a ':' where no key can begin: this line is indented deeper than the key above it, or a value holds ': ' (put that value in quotes)",
        id="colon-in-a-value",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    type cpl_ratio\n    warning: 2\n",
        "line 3: a line without ':' among keys: write each as `key: value`, with a space after the ':'",
        id="key-without-colon",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    warning:2\n    type: cpl_ratio\n",
        "line 3: a line without ':' among keys: write each as `key: value`, with a space after the ':'",
        id="no-space-after-colon",
    ),
    pytest.param("rules:\n  - name: r1\n\ttype: cpl_ratio\n", "line 3: a tab character: YAML indents with spaces only", id="tab"),
    pytest.param(
        "rules:\n  - name: 'r1\n    type: cpl_ratio\n", "line 2: a quote (') opens on this line and is never closed", id="unclosed-quote",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    scope: {accounts: ['1', '2']\n    warning: 2\n",
        "line 3: the '{' on this line is missing its closing '}', or a ',' between two of its items",
        id="unclosed-brace",
    ),
    pytest.param(
        "rules:\n  - {name: r1 type: cpl_ratio, warning: 2}\n",
        "line 2: the '{' on this line is missing its closing '}', or a ',' between two of its items",
        id="missing-comma",
    ),
    pytest.param(
        "rules: [\n  {name: r1, type: cpl_ratio, warning: 2},\n", "line 1: the file ends before the '[' on this line is closed with ']'",
        id="file-ends-inside-brackets",
    ),
    pytest.param("rules: [{name: r1}]]\n", "line 1: a ']' that closes nothing: no '[' before it is still open", id="extra-closing-bracket"),
    pytest.param(
        "rules:\n  - name: 'r1' spike\n", "line 2: more text after a value in quotes or brackets: put the whole value in quotes", id="text-after-quotes",
    ),
    pytest.param("rules:\n  - name: @r1\n", "line 2: a value cannot begin with '@': put the value in quotes", id="reserved-character"),
    pytest.param(
        "rules:\n  - name: r1\n    description: *important\n",
        "line 3: *important refers to an anchor &important that is not defined above: put a value that begins with '*' in quotes",
        id="star-at-the-start",
    ),
    pytest.param(
        "rules:\n  - name: r1\n    description: **important**\n", "line 3: a value cannot begin with '*': put the value in quotes", id="two-stars",
    ),
    pytest.param(
        'rules:\n  - name: r1\n    description: "C:\\q"\n',
        "line 3: in double quotes a backslash starts an escape (\\n, \\t, \\\\) and this one is none: use single quotes, or write the backslash twice",
        id="unknown-escape",
    ),
    pytest.param(
        "rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n---\nrules: []\n",
        "line 3: a second document begins on this line ('---'): a file holds one",
        id="two-documents",
    ),
]


@pytest.mark.parametrize("text, line", YAML_SYNTAX_IN_WORDS)
def test_yaml_syntax_errors_in_words(tmp_path: Path, text: str, line: str) -> None:
    path = write_case(tmp_path, "", _broken(text))
    assert str(load_error(path, environ={})) == expected(tmp_path, [f"rules/cost_per_lead.yaml: {line}"])


def test_load_rules_alone_checks_scope_parties(tmp_path: Path) -> None:
    write_case(tmp_path, "", rule("- {name: r1, type: cpl_ratio, warning: 2, scope: {parties: [b]}}\n"))
    assert [r.name for r in load_rules(tmp_path / "rules")] == ["r1"]  # no parties given: nothing to check against
    with pytest.raises(ConfigError) as excinfo:
        load_rules(tmp_path / "rules", parties={})
    assert str(excinfo.value) == expected(
        tmp_path, ["rules/a.yaml: line 2, rule r1: scope.parties[0]: party 'b' is not defined under 'parties' (defined: none are configured)"]
    )


def test_problems_in_several_files_are_reported_together(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        "stroe: {url: 'sqlite:///a.db'}\nrules_dir: my_rules\nsources:\n  - {type: csv, name: s}\n",
        {
            "a.yaml": "rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n",
            "b.yaml": "rules: [\n",
            "c.yaml": "rules:\n  - {name: r1, type: isolation_forest, warning: 0.99}\n",
            "d.yaml": "rules:\n  - {name: r2, type: cpl_ratio, warning: 1}\n  - {name: r3, type: lead_shortfall, warning: 0.2, critical: 0.4}\n",
        },
        rules_dir="my_rules",
    )
    assert str(load_error(path, environ={})) == expected(
        tmp_path,
        [
            "config.yaml: sources[0].metrics: required key is missing",
            f"config.yaml: stroe: unknown key; did you mean 'store'? expected one of: {CONFIG_KEYS}",
            "my_rules/b.yaml: line 1: the file ends before the '[' on this line is closed with ']'",
            "my_rules/c.yaml: line 2, rule r1: name: the name is already used by the rule on line 2 of a.yaml",
            "my_rules/d.yaml: line 2, rule r2: warning: must be a ratio > 1, got 1",
            "my_rules/d.yaml: line 3, rule r3: critical: must be at most warning (0.2), got 0.4",
        ],
    )


def test_cross_reference_problems_are_reported_with_rule_problems(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        PARTY_A + "ownership:\n  default_party: b\n",
        rule("- {name: r1, type: cpl_ratio, warning: 2, scope: {parties: [c]}}\n- {name: r2, type: threshold, metric: cpl, warning: -1}\n"),
    )
    error = load_error(path, environ={})
    assert str(error) == expected(
        tmp_path,
        [
            "config.yaml: ownership.default_party: party 'b' is not defined under 'parties' (defined: a)",
            "rules/a.yaml: line 3, rule r2: warning: must be >= 0, got -1",
        ],
    )
    # the scope of r1 is only checked once the file as a whole is valid
    assert [p.where for p in error.problems] == ["ownership.default_party", "line 3, rule r2"]


# ----------------------------------------------------------------------------------------------
# rule thresholds accepted at their boundaries


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{name: r, type: cpl_ratio, warning: 1.01, critical: 1.01}", id="cpl-ratio-just-above-1-critical-equal"),
        pytest.param("{name: r, type: lead_shortfall, warning: 0.99, critical: 0}", id="lead-shortfall-0-to-below-1"),
        pytest.param("{name: r, type: threshold, metric: spend, warning: 0}", id="threshold-zero"),
        pytest.param("{name: r, type: isolation_forest, warning: 0.001, critical: 0.999}", id="isolation-forest-inside-0-1"),
        pytest.param("{name: r, type: cpl_ratio, warning: 3, after_ownership_change: {warning: 2}}", id="override-below-own-warning-no-critical"),
    ],
)
def test_rule_thresholds_accepted(tmp_path: Path, text: str) -> None:
    path = write_case(tmp_path, WITH_FOREST, rule(f"- {text}\n"))
    _, rules = load_config(path, environ={})
    assert [r.name for r in rules] == ["r"]


def test_numbers_are_read_as_written(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        "sources:\n  - {type: csv, name: s, metrics: [m.csv], lookback_days: 3}\n"
        "detection:\n  baseline: {half_life_days: 7, min_leads: 25e-1}\nalerts:\n  excess_steps: [1e3, 5000, 1.5E+4]\n",
        rule("- {name: r, type: cpl_ratio, warning: 2, critical: 4.5, min_spend: 1e3, max_p_value: 3e-4, after_ownership_change: {warning: 1.5, min_spend: 50}}\n"),
    )
    config, (r,) = load_config(path, environ={})
    assert (config.sources[0].lookback_days, config.detection.baseline.half_life_days, config.detection.baseline.min_leads) == (3, 7.0, 2.5)
    assert config.alerts.excess_steps == [1000.0, 5000.0, 15000.0]
    assert (r.warning, r.critical, r.min_spend, r.max_p_value) == (2.0, 4.5, 1000.0, 0.0003)
    assert (r.after_ownership_change.warning, r.after_ownership_change.min_spend) == (1.5, 50.0)
    assert {type(v) for v in (r.warning, r.min_spend, config.detection.baseline.half_life_days)} == {float}


def _number_settings(model: type, prefix: str = "", seen: set | None = None):
    """(path, annotation, metadata) of every int or float setting under ``model``, through nested
    models, optional values, lists, mappings and unions (the rule and source types)."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)

    def walk(annotation, metadata, where):
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(annotation)
            yield from walk(base, [*metadata, *extra], where)
        elif annotation in (int, float):
            yield where, annotation, metadata
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _number_settings(annotation, where + ".", seen)
        elif origin is not None:
            for arg in typing.get_args(annotation):
                yield from walk(arg, [] if origin in (list, dict) else metadata, where + ("[]" if origin in (list, dict) else ""))

    for name, field in model.model_fields.items():
        yield from walk(field.annotation, list(field.metadata), prefix + name)


@pytest.mark.parametrize("root", [Config, RulesFile], ids=["config.yaml", "rules"])
def test_every_number_setting_is_strict_and_finite(root: type) -> None:
    settings = list(_number_settings(root))
    assert len(settings) > 20
    loose = [where for where, _, metadata in settings if Strict() not in metadata]
    infinite = [where for where, kind, metadata in settings if kind is float and AllowInfNan(False) not in metadata]
    assert (loose, infinite) == ([], [])


# ----------------------------------------------------------------------------------------------
# behaviour: interpolation, secrets, paths, defaults, immutability, the registry


@pytest.mark.parametrize(
    "text, environ, result",
    [
        pytest.param("${DB_HOST}", {"DB_HOST": "db.internal"}, "db.internal", id="set"),
        pytest.param("${DB_HOST:-localhost}", {}, "localhost", id="default-when-unset"),
        pytest.param("${DB_HOST:-localhost}", {"DB_HOST": "db.internal"}, "db.internal", id="set-beats-default"),
        pytest.param("${DB_HOST:-}", {}, "", id="empty-default"),
        pytest.param("${EMPTY}", {"EMPTY": ""}, "", id="set-but-empty"),
        pytest.param("cost $$5 per ${UNIT:-lead}", {}, "cost $5 per lead", id="dollar-dollar-is-literal"),
        pytest.param("$${NOT_A_VAR}", {}, "${NOT_A_VAR}", id="escaped-reference"),
        pytest.param("$5 and $HOME", {"HOME": "/root"}, "$5 and $HOME", id="bare-dollar-untouched"),
    ],
)
def test_interpolate_env(text: str, environ: dict[str, str], result: str) -> None:
    data, problems = interpolate_env({"a": [text], "n": 3}, "f.yaml", environ)
    assert (data, problems) == ({"a": [result], "n": 3}, [])


def test_interpolate_env_names_each_missing_variable() -> None:
    _, problems = interpolate_env({"a": {"b": ["${X} ${Y:-y} ${Z}"]}}, "f.yaml", {})
    assert [str(p) for p in problems] == [
        "f.yaml: a.b[0]: environment variable X is not set",
        "f.yaml: a.b[0]: environment variable Z is not set",
    ]


def test_load_config_interpolates_config_and_rules(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        """\
        store:
          url: postgresql+psycopg://ads:${DB_PASSWORD}@${DB_HOST:-localhost}/ads
        parties:
          a: {name: "Agency $$ ${TEAM:-Team}"}
        """,
        rule("- {name: r1, type: cpl_ratio, description: 'owner: ${OWNER}', warning: 2}\n"),
    )
    config, rules = load_config(path, environ={"DB_PASSWORD": "pa$$w0rd", "OWNER": "ops"})
    assert config.store.url.get_secret_value() == "postgresql+psycopg://ads:pa$$w0rd@localhost/ads"  # values are not re-expanded
    assert config.parties["a"].name == "Agency $ Team"
    assert rules[0].description == "owner: ops"


def test_store_url_is_secret(tmp_path: Path) -> None:
    path = write_case(tmp_path, "store:\n  url: postgresql://ads:${DB_PASSWORD}@db/ads\n")
    config, _ = load_config(path, environ={"DB_PASSWORD": "hunter2-secret"})
    assert config.store.url.get_secret_value() == "postgresql://ads:hunter2-secret@db/ads"
    for shown in (str(config.store.url), repr(config.store.url), repr(config.store), str(config), repr(config), config.model_dump_json()):
        assert "hunter2" not in shown
    assert str(config.store.url) == "**********"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "conf").mkdir()
    path = write_case(
        root / "conf",
        f"""\
        store: {{url: "sqlite:///data/ads.db"}}
        sources:
          - type: csv
            name: s
            metrics: [exports/*.csv, {root}/abs/metrics.csv]
            changes: [../shared/changes.csv]
        ownership: {{file: ownership.csv}}
        rules_dir: my_rules
        alerts:
          sinks: [{{type: jsonl, path: out/alerts.jsonl}}]
        """,
        rules_dir="my_rules",
    )
    conf = root / "conf"
    config, rules = load_config(path, environ={})
    assert config.store.url.get_secret_value() == f"sqlite:///{conf}/data/ads.db"
    assert config.sources[0].metrics == [f"{conf}/exports/*.csv", f"{root}/abs/metrics.csv"]
    assert config.sources[0].changes == [f"{root}/shared/changes.csv"]
    assert config.ownership.file == f"{conf}/ownership.csv"
    assert config.rules_dir == f"{conf}/my_rules"
    assert config.alerts.sinks[0].path == f"{conf}/out/alerts.jsonl"
    assert [r.name for r in rules] == ["r1"]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///:memory:", id="sqlite-memory"),
        pytest.param("sqlite:////var/lib/ads.db", id="sqlite-absolute"),
        pytest.param("postgresql+psycopg://ads@db/ads", id="postgresql"),
    ],
)
def test_store_urls_that_are_not_relative_files_are_kept(tmp_path: Path, url: str) -> None:
    config, _ = load_config(write_case(tmp_path, f"store: {{url: '{url}'}}\n"), environ={})
    assert config.store.url.get_secret_value() == url


def test_empty_config_loads_with_the_model_defaults(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    path = write_case(
        tmp_path,
        "# nothing set: every default comes from the models\n",
        rule(
            """\
            - {name: ratio, type: cpl_ratio, warning: 2}
            - {name: shortfall, type: lead_shortfall, warning: 0.2}
            - {name: clicks-low, type: threshold, metric: clicks, direction: below, warning: 10}
            - {name: runaway, type: spend_ratio, warning: 3}
            """
        ),
    )
    config, rules = load_config(path, environ={})
    # relative defaults land beside config.yaml, not in the working directory
    assert config.rules_dir == f"{root}/rules"
    assert config.store.url.get_secret_value() == f"sqlite:///{root}/anomaly.db"
    assert (config.parties, config.sources, config.alerts.sinks) == ({}, [], [ConsoleSinkConfig(type="console")])
    assert (config.ownership.file, config.ownership.default_party, config.ownership.assignments) == (None, None, [])
    assert config.detection == DetectionConfig()
    assert (config.detection.baseline.half_life_days, config.detection.forest.n_estimators, config.detection.incidents.resolve_after_days) == (14.0, 100, 2)

    ratio, shortfall, clicks, runaway = rules
    assert (type(ratio), type(shortfall), type(clicks), type(runaway)) == (CplRatioRule, LeadShortfallRule, ThresholdRule, SpendRatioRule)
    for r in rules:
        assert (r.enabled, r.window_days, r.critical, r.min_spend, r.description) == (True, 1, None, 0.0, "")
        assert (r.scope, r.forest, r.after_ownership_change) == (Scope(), ForestGate(mode="ignore", min_score=0.99), None)
    assert (ratio.max_p_value, ratio.min_expected_leads, ratio.rule_family) == (0.001, 0.0, "cost_per_lead")
    assert (shortfall.max_p_value, shortfall.min_expected_leads, shortfall.breach_direction()) == (0.001, 3.0, "below")
    assert (clicks.max_p_value, clicks.rule_family, clicks.breach_direction()) == (None, "clicks", "below")
    assert (ratio.use_clicks, ratio.baseline_lag_days) == (True, 0)
    assert (runaway.max_p_value, runaway.rule_family, runaway.breach_direction()) == (0.001, "spend", "above")


def test_models_are_frozen(tmp_path: Path) -> None:
    config, rules = load_config(write_case(tmp_path, PARTY_A), environ={})
    with pytest.raises(ValidationError, match="Instance is frozen"):
        config.rules_dir = "elsewhere"
    with pytest.raises(ValidationError, match="Instance is frozen"):
        config.detection.forest.enabled = False
    with pytest.raises(ValidationError, match="Instance is frozen"):
        config.parties["a"].name = "Someone else"
    with pytest.raises(ValidationError, match="Instance is frozen"):
        rules[0].warning = 1.5
    assert rules[0].warning == 2


def test_rule_types_are_keyed_by_their_yaml_type() -> None:
    assert list(RULE_TYPES) == ["cpl_ratio", "lead_shortfall", "threshold", "spend_ratio", "cpc_ratio", "isolation_forest"]
    for name, model in RULE_TYPES.items():
        assert typing.get_args(model.model_fields["type"].annotation) == (name,)


def test_each_yaml_type_loads_as_its_registered_model(tmp_path: Path) -> None:
    texts = {
        "cpl_ratio": "warning: 2",
        "lead_shortfall": "warning: 0.2",
        "threshold": "metric: cpl, warning: 400",
        "spend_ratio": "warning: 3",
        "isolation_forest": "warning: 0.99",
    }
    path = write_case(tmp_path, WITH_FOREST, rule("".join(f"- {{name: {n.replace('_', '-')}, type: {n}, {t}}}\n" for n, t in texts.items())))
    _, rules = load_config(path, environ={})
    assert [type(r) for r in rules] == [RULE_TYPES[n] for n in texts]


def test_with_overrides_applies_after_ownership_change(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        "",
        rule(
            """\
            - name: strict
              type: cpl_ratio
              window_days: 3
              warning: 2.5
              critical: 5
              min_spend: 100
              min_expected_leads: 4
              after_ownership_change: {within_days: 14, warning: 1.8, min_expected_leads: 2, max_p_value: 0.01}
            - {name: plain, type: cpl_ratio, warning: 2}
            """
        ),
    )
    _, (strict, plain) = load_config(path, environ={})
    stricter = strict.with_overrides()
    assert (stricter.warning, stricter.critical, stricter.min_spend, stricter.min_expected_leads, stricter.max_p_value) == (1.8, 5, 100, 2, 0.01)
    assert (stricter.name, stricter.window_days, type(stricter)) == ("strict", 3, CplRatioRule)
    assert (strict.warning, strict.min_expected_leads, strict.max_p_value) == (2.5, 4, 0.001)  # the rule itself is unchanged
    assert plain.with_overrides() is plain


def test_repo_config_and_rules_load() -> None:
    # the embedded default must always load; its rules are edited often, so only their shape is checked
    config, rules = load_config(REPO / "config.yaml", environ={})
    assert sorted(config.parties) == ["beacon", "northwind"]
    assert config.ownership.default_party == "northwind"
    assert [s.name for s in config.sources] == ["sample"]
    assert config.sources[0].metrics == [str(REPO / "sample" / "metrics.csv")]
    assert config.rules_dir == str(REPO / "rules")
    assert rules and len({r.name for r in rules}) == len(rules)
    assert {type(r) for r in rules} <= set(RULE_TYPES.values())


def test_read_yaml_keeps_yaml_types(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 2026-07-01\nb: '0042'\nc: [1, 2.5, true, null]\n", encoding="utf-8")
    assert read_yaml(path) == {"a": dt.date(2026, 7, 1), "b": "0042", "c": [1, 2.5, True, None]}


def test_read_yaml_refuses_python_tags(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        read_yaml(path)
    assert str(excinfo.value) == (
        f"{path}: line 1, column 4: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    )


# ----------------------------------------------------------------------------------------------
# the `check` command


def test_cli_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_case(
        tmp_path,
        PARTY_A + "sources:\n  - {type: csv, name: s, metrics: [m.csv]}\n"
        + "ownership:\n  assignments:\n    - {account_id: '1001', history: [{party: a, since: 2026-01-01}]}\n",
        rule("- {name: r1, type: cpl_ratio, warning: 2}\n- {name: r2, type: cpl_ratio, warning: 3, enabled: false}\n"),
    )
    assert cli.main(["--config", str(path), "check"]) == 0
    out, err = capsys.readouterr()
    root = tmp_path.resolve()
    assert out == f"{path}: OK — 1 source(s), 1 party, 1 ownership period(s), 1 enabled rule(s) of 2 in {root}/rules\n"
    assert err == ""


def test_cli_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_case(
        tmp_path,
        "detection:\n  forest:\n    n_estimators: 0\n",
        rule("- {name: r1, type: cpl_ratio, warning: 2, windw_days: 3}\n- {name: r2, type: isolation_forest, warning: 1}\n"),
    )
    assert cli.main(["--config", str(path), "check"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == expected(
        tmp_path,
        [
            f"config.yaml: sources: {NO_SOURCE}",
            "config.yaml: detection.forest.n_estimators: input should be greater than or equal to 1, got 0",
            f"rules/a.yaml: line 2, rule r1: windw_days: unknown key; did you mean 'window_days'? expected one of: {RULE_KEYS}",
            "rules/a.yaml: line 3, rule r2: warning: must be a score > 0 and < 1, got 1",
        ],
    ) + "\n4 problems found.\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("- {name: f1, type: isolation_forest, warning: 0.99}\n", id="isolation-forest-rule"),
        pytest.param("- {name: f1, type: cpl_ratio, warning: 2, forest: {mode: escalate}}\n", id="forest-gate"),
    ],
)
def test_a_rule_that_needs_the_forest_needs_it_enabled(tmp_path: Path, text: str) -> None:
    path = write_case(tmp_path, "", rule(text))
    assert str(load_error(path, environ={})) == expected(
        tmp_path, ["config.yaml: detection.forest.enabled: rule 'f1' uses the isolation forest: set it to true, or disable the rule"]
    )
    (tmp_path / "on").mkdir()
    write_case(tmp_path / "on", WITH_FOREST, rule(text))
    assert [r.name for r in load_config(tmp_path / "on" / "config.yaml", environ={})[1]] == ["f1"]


NO_SOURCE = "at least one source is needed (a csv source with its metrics files, or a google_ads, microsoft_ads or meta_ads source), got none"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty-file"),
        pytest.param("---\n", id="empty-document"),
        pytest.param("null\n", id="null"),
        pytest.param("# nothing yet\n", id="only-a-comment"),
        pytest.param("sources: []\n", id="empty-list"),
        pytest.param(PARTY_A, id="parties-but-no-source"),
    ],
)
@pytest.mark.parametrize("command", ["check", "run", "serve", "demo"])
def test_a_config_without_a_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, text: str, command: str
) -> None:
    def serve(path: Path) -> int:
        raise AssertionError("anomaly serve started on a config without a source")

    monkeypatch.setattr("anomaly.service.serve", serve)
    path = write_case(tmp_path, text)
    assert cli.main(["--config", str(path), command]) == 1
    out, err = capsys.readouterr()
    problem = expected(tmp_path, [f"config.yaml: sources: {NO_SOURCE}"])
    after = "1 problem found." if command == "check" else "The configuration is invalid; `anomaly check` lists every problem."
    assert (out, err) == ("", f"{problem}\n{after}\n")
    assert not (tmp_path / "anomaly.db").exists()  # nothing ran


def test_commands_that_only_read_the_store_take_a_config_without_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # e.g. a partner manager's config that points at the store the service fills, to backtest a rule change
    path = write_case(tmp_path, "store: {url: 'sqlite:///shared.db'}\n")
    assert cli.main(["--config", str(path), "incidents"]) == 0
    assert capsys.readouterr() == ("(none)\n", "")


def test_a_config_without_a_source_loads_for_a_replay_of_frames_in_memory(tmp_path: Path) -> None:
    # benchmarks/detection_quality.py and backtest_speed.py replay frames they generate: no source to pull
    path = write_case(tmp_path, "alerts: {sinks: []}\n")
    config, rules = load_config(path, environ={})
    assert (config.sources, [r.name for r in rules]) == ([], ["r1"])
    assert str(load_error(path, environ={}, require_sources=True)) == expected(tmp_path, [f"config.yaml: sources: {NO_SOURCE}"])


def test_cli_check_repo_config(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "config.yaml"
    _, rules = load_config(path, environ={})
    assert cli.main(["--config", str(path), "check"]) == 0
    out, err = capsys.readouterr()
    enabled = sum(r.enabled for r in rules)
    assert out == f"{path}: OK — 1 source(s), 2 parties, 2 ownership period(s), {enabled} enabled rule(s) of {len(rules)} in {REPO / 'rules'}\n"
    assert err == ""


def test_a_slack_sink_takes_its_token_from_the_environment_and_never_shows_it(tmp_path: Path) -> None:
    path = write_case(tmp_path, "alerts:\n  sinks:\n    - {type: slack, channel: C0ALERTS, token: '${SLACK_BOT_TOKEN}'}\n")
    config, _ = load_config(path, environ={"SLACK_BOT_TOKEN": "xoxb-1234-secret"})
    (sink,) = config.alerts.sinks
    assert (sink.channel, sink.token.get_secret_value()) == ("C0ALERTS", "xoxb-1234-secret")
    assert "xoxb-1234-secret" not in repr(config) and "xoxb-1234-secret" not in str(config.model_dump())


# ----------------------------------------------------------------------------------------------
# broken or hostile YAML: one tiny file per error class, each refused at once with a clear error

BOMB = "".join(  # the "billion laughs": 9 levels of 9 aliases each, 9^9 values once expanded
    [f"lol0: &lol0 [{', '.join(['lol'] * 9)}]\n"] + [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]\n" for i in range(1, 9)]
)
NESTING = "invalid YAML: expected at most 64 levels of nesting, got more"
A_DATE = "invalid YAML: expected a date (YYYY-MM-DD) or a date-time"

YAML_ERRORS = [
    pytest.param(
        "x:\n" + textwrap.indent(BOMB, "  "),
        ["config.yaml: line 6, column 23: invalid YAML: expected at most 20,000 values, counting each alias as the values it repeats, "
         "and got more by this point"],
        id="alias-bomb",
    ),
    pytest.param(
        "x: &a [1, *a]\n",
        ["config.yaml: line 1, column 11: invalid YAML: alias *a is used inside its own anchor &a; expected an alias of a finished value"],
        id="recursive-alias",
    ),
    pytest.param("x: " + "[" * 10_000 + "]" * 10_000 + "\n", [f"config.yaml: line 1, column 67: {NESTING}"], id="deep-nesting-lists"),
    pytest.param("x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", [f"config.yaml: line 1, column 253: {NESTING}"], id="deep-nesting-mappings"),
    pytest.param(
        "? [a, b]\n: 1\n", ["config.yaml: line 1, column 3: invalid YAML: expected a key that is text or a number, got a list"], id="list-as-key"
    ),
    pytest.param(
        PARTY_A + "ownership:\n  assignments:\n    - {account_id: '1', history: [{party: a, since: 2026-02-30}]}\n",
        [f"config.yaml: line 5, column 53: {A_DATE}, got '2026-02-30' (day is out of range for month)"],
        id="impossible-date",
    ),
    pytest.param("x: 0000-01-01\n", [f"config.yaml: line 1, column 4: {A_DATE}, got '0000-01-01' (year 0 is out of range)"], id="year-zero"),
    pytest.param(
        "x: 2026-01-01 10:00:00 +99:00\n", [f"config.yaml: line 1, column 4: {A_DATE}, got '2026-01-01 10:00:00 +99:00'"], id="offset-beyond-a-day"
    ),
    pytest.param("x: !!timestamp soon\n", [f"config.yaml: line 1, column 4: {A_DATE}, got 'soon'"], id="tagged-timestamp"),
    pytest.param(
        "x: !!int many\n", ["config.yaml: line 1, column 4: invalid YAML: expected an integer (at most 4300 digits), got 'many'"], id="tagged-int"
    ),
    pytest.param("x: !!bool maybe\n", ["config.yaml: line 1, column 4: invalid YAML: expected true or false, got 'maybe'"], id="tagged-bool"),
    pytest.param("x: !!map plain\n", ["config.yaml: line 1, column 4: invalid YAML: expected a mapping, got a scalar"], id="tagged-map"),
    pytest.param(
        "detection: {forest: {random_state: " + "7" * 5000 + "}}\n",
        ["config.yaml: line 1, column 36: invalid YAML: expected an integer (at most 4300 digits), got '" + "7" * 56 + "..."],
        id="integer-of-5000-digits",
    ),
    pytest.param(
        b"store: \x00\n",
        ["config.yaml: line 1, column 8: invalid YAML: expected printable text, got the character '\\x00'; is the file UTF-16? save it as UTF-8"],
        id="nul-character",
    ),
    pytest.param("store: {}\n".encode("utf-16"), ["config.yaml: not valid UTF-8 (the file is UTF-16); save the file as UTF-8"], id="utf16"),
    pytest.param(
        "# " + "x" * 1_000_000 + "\n", ["config.yaml: is 1.0 MB (1,000,003 bytes), over the 1 MB limit for a YAML file"], id="too-large"
    ),
    pytest.param("1: 2\n", ["config.yaml: keys should be text, got the key 1"], id="number-as-setting-name"),
    pytest.param("detection: {~: 1}\n", ["config.yaml: detection: keys should be text, got the key None"], id="null-as-setting-name"),
    pytest.param("parties: {1: {name: A}}\n", ["config.yaml: parties: key 1: input should be a valid string"], id="number-as-party-key"),
    pytest.param(
        "parties: {Big Agency: {name: A}}\n",
        ["config.yaml: parties: key 'Big Agency': string should match pattern '^[a-z0-9][a-z0-9_.-]{0,63}$'"],
        id="bad-party-key",
    ),
    pytest.param(
        'sources: [{type: csv, name: s, metrics: ["m\\0.csv"]}]\n',
        ["config.yaml: sources[0].metrics[0]: expected a file path, got 'm\\x00.csv', which contains a NUL character"],
        id="nul-in-path",
    ),
    pytest.param(
        'store: {url: "sqlite:///a\\0.db"}\n',
        ["config.yaml: store.url: expected a database URL, got one that contains a NUL character"],
        id="nul-in-store-url",
    ),
    pytest.param(
        "sources: [{type: csv, name: s, metrics: [~nosuchuser/m.csv]}]\n",
        ["config.yaml: sources[0].metrics[0]: expected a file path, got '~nosuchuser/m.csv': Could not determine home directory."],
        id="home-of-an-unknown-user",
    ),
    pytest.param(
        "service: {timezone: " + "a" * 300 + "}\n",
        [f"config.yaml: service.timezone: expected an IANA time zone like 'Europe/Berlin' or 'UTC', got '{'a' * 300}'"],
        id="time-zone-longer-than-a-file-name",
    ),
    pytest.param(
        "alerts: {silences: [{account: '1', until: 9999-12-31}]}\n",
        ["config.yaml: alerts.silences[0].until: expected a date (2026-07-20) or a datetime (2026-07-20T18:00, UTC unless an offset is given) "
         "before 9999-12-31, got '9999-12-31'"],
        id="silence-until-the-last-day",
    ),
    pytest.param(
        "alerts: {silences: [{account: '1', until: '9999-12-31T23:00-05:00'}]}\n",
        ["config.yaml: alerts.silences[0].until: expected a date (2026-07-20) or a datetime (2026-07-20T18:00, UTC unless an offset is given) "
         "before 9999-12-31, got '9999-12-31T23:00-05:00'"],
        id="silence-offset-past-the-last-day",
    ),
    pytest.param(
        "rules_dir: " + "r" * 300 + "\n", [f"{'r' * 300}: cannot read the rules folder (File name too long)"], id="rules-folder-name-too-long"
    ),
    pytest.param(
        '"stor\\ne": {url: "sqlite:///a.db"}\n',
        [f"config.yaml: 'stor\\ne': unknown key; did you mean 'store'? expected one of: {CONFIG_KEYS}"],
        id="line-break-in-a-key",
    ),
]


@pytest.mark.parametrize("config, lines", CONFIG_ERRORS + YAML_ERRORS)
def test_config_error(tmp_path: Path, config: str | bytes, lines: list[str]) -> None:
    path = write_case(tmp_path, config)
    assert str(load_error(path, environ={})) == expected(tmp_path, lines)


def test_a_folder_named_like_a_rules_file_is_reported(tmp_path: Path) -> None:
    path = write_case(tmp_path, "", ONE_RULE)
    (tmp_path / "rules" / "old.yaml").mkdir()
    assert str(load_error(path, environ={})) == expected(tmp_path, ["rules/old.yaml: is a directory, not a regular file; expected a YAML file"])


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    # editors on Windows save "UTF-8 with BOM": it is UTF-8 all the same
    path = write_case(tmp_path, b"\xef\xbb\xbf" + PARTY_A.encode())
    config, _ = load_config(path, environ={})
    assert config.parties["a"].name == "Agency A"


def test_anchors_and_aliases_within_the_limit_load(tmp_path: Path) -> None:
    # the same schedule for two sources, written once
    path = write_case(
        tmp_path,
        """\
        sources:
          - {type: csv, name: a, metrics: [a.csv], schedule: &daily {cron: "0 6 * * *", timezone: Europe/Berlin}}
          - {type: csv, name: b, metrics: [b.csv], schedule: *daily}
        """,
    )
    config, _ = load_config(path, environ={})
    assert [s.schedule.cron for s in config.sources] == ["0 6 * * *", "0 6 * * *"]


def test_a_value_from_the_environment_is_quoted_by_its_reference_not_its_value(tmp_path: Path) -> None:
    path = write_case(
        tmp_path,
        """\
        alerts:
          sinks:
            type: slack
            token: ${SLACK_BOT_TOKEN}
          slack_app: ${SLACK_APP_TOKEN}
        service:
          timezone: prefix-${TZ_SECRET}
        """,
    )
    environ = {"SLACK_BOT_TOKEN": "xoxb-1111-secret-bot", "SLACK_APP_TOKEN": "xapp-2222-secret-app", "TZ_SECRET": "zone-3333"}
    error = load_error(path, environ=environ)
    assert str(error) == expected(tmp_path, [
        "config.yaml: alerts.sinks: input should be a valid list, got {'type': 'slack', 'token': '${SLACK_BOT_TOKEN}'}",
        "config.yaml: alerts.slack_app: input should be a valid dictionary or instance of SlackAppConfig, got '${SLACK_APP_TOKEN}'",
        "config.yaml: service.timezone: expected an IANA time zone like 'Europe/Berlin' or 'UTC', got 'prefix-${TZ_SECRET}'",
    ])
    assert not any(secret in str(error) for secret in environ.values())
