"""config.yaml and rules/*.yaml: strict, frozen pydantic models with every default in one place.

Loading reports every problem at once as ``file: path: message``. Strings may use ``${VAR}`` (or
``${VAR:-default}``) to read the environment, which is how secrets get in; ``$$`` is a literal
``$``. Relative paths are resolved against the folder of the file that names them.

The package, by concern: ``yamlio`` (safe, bounded YAML reading and ``${VAR}`` interpolation),
``base`` (what every model shares), ``rules`` (rules/*.yaml), ``detection``, ``sources``,
``alerts`` (sinks, routes, silences, the Slack app), ``parties`` (parties, ownership, settlement),
``service`` (the store, schedules, ``anomaly serve``), ``model`` (``Config``, config.yaml as a
whole), ``errors`` (validation errors as problems) and ``loading`` (load_config, load_rules and
the checks across settings). Every name is importable from ``anomaly.config`` as before.
"""

from anomaly.config.alerts import (
    GOOGLE_ADS_CAMPAIGN_URL,
    MENTION_FORMS,
    AlertsConfig,
    ConsoleSinkConfig,
    JsonlSinkConfig,
    Mention,
    RouteConfig,
    SilenceConfig,
    Sink,
    SinkName,
    SlackAppConfig,
    SlackSinkConfig,
    SlackWebhookSinkConfig,
    resolve_sink_name,
)
from anomaly.config.base import FilePath, Slug, StrictModel
from anomaly.config.detection import BaselineConfig, DetectionConfig, ForestConfig, IncidentConfig, VariationConfig
from anomaly.config.loading import (
    CONFIG_ENV,
    PROJECT_CONFIG,
    default_config_path,
    load_config,
    load_rules,
    undefined_references,
)
from anomaly.config.model import Config
from anomaly.config.parties import (
    OwnershipAssignment,
    OwnershipConfig,
    OwnershipPeriodConfig,
    PartyConfig,
    SettlementConfig,
)
from anomaly.config.rules import (
    RULE_TYPES,
    SEVERITIES,
    TUNABLES,
    AfterChange,
    AfterOwnershipChange,
    ChangeKind,
    CpcRatioRule,
    CplRatioRule,
    ExplainedBy,
    ForestGate,
    IsolationForestRule,
    LeadShortfallRule,
    MetricName,
    Rule,
    RuleBase,
    RulesFile,
    Scope,
    Severity,
    SpendRatioRule,
    ThresholdRule,
)
from anomaly.config.service import Crontab, ScheduleConfig, ServiceConfig, StoreConfig
from anomaly.config.sources import (
    CsvSourceConfig,
    CustomerId,
    GoogleAdsSourceConfig,
    LeadCategory,
    LeadDefinition,
    META_AGGREGATE_ACTION_TYPES,
    META_LEAD_ACTION_TYPES,
    MetaAccountId,
    MetaAdsSourceConfig,
    OwnershipInferenceConfig,
    Source,
    source_platform,
)
from anomaly.config.yamlio import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES, interpolate_env, read_yaml

# private names that other modules import from here
from anomaly.config.alerts import _MENTION  # noqa: F401
from anomaly.config.errors import _problems_from_validation  # noqa: F401

__all__ = [
    "CONFIG_ENV",
    "GOOGLE_ADS_CAMPAIGN_URL",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "META_AGGREGATE_ACTION_TYPES",
    "META_LEAD_ACTION_TYPES",
    "MENTION_FORMS",
    "PROJECT_CONFIG",
    "RULE_TYPES",
    "SEVERITIES",
    "TUNABLES",
    "AfterChange",
    "AfterOwnershipChange",
    "ChangeKind",
    "CpcRatioRule",
    "ExplainedBy",
    "AlertsConfig",
    "BaselineConfig",
    "Config",
    "ConsoleSinkConfig",
    "CplRatioRule",
    "Crontab",
    "CsvSourceConfig",
    "CustomerId",
    "DetectionConfig",
    "FilePath",
    "ForestConfig",
    "ForestGate",
    "GoogleAdsSourceConfig",
    "IncidentConfig",
    "IsolationForestRule",
    "JsonlSinkConfig",
    "LeadCategory",
    "LeadDefinition",
    "LeadShortfallRule",
    "Mention",
    "MetaAccountId",
    "MetaAdsSourceConfig",
    "MetricName",
    "OwnershipAssignment",
    "OwnershipConfig",
    "OwnershipInferenceConfig",
    "OwnershipPeriodConfig",
    "PartyConfig",
    "RouteConfig",
    "Rule",
    "RuleBase",
    "RulesFile",
    "ScheduleConfig",
    "Scope",
    "ServiceConfig",
    "SettlementConfig",
    "Severity",
    "SilenceConfig",
    "Sink",
    "SinkName",
    "SlackAppConfig",
    "SlackSinkConfig",
    "SlackWebhookSinkConfig",
    "Slug",
    "Source",
    "source_platform",
    "SpendRatioRule",
    "StoreConfig",
    "StrictModel",
    "ThresholdRule",
    "VariationConfig",
    "default_config_path",
    "interpolate_env",
    "load_config",
    "load_rules",
    "read_yaml",
    "resolve_sink_name",
    "undefined_references",
]
