"""config.yaml ``alerts``: sinks, routes, silences, the Slack app, and how alerts link to campaigns."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from anomaly.config.base import FilePath, Float, Int, Slug, StrictModel
from anomaly.config.rules import Severity
from anomaly.platforms import PLATFORMS


def _secret(what: str) -> AfterValidator:
    """A check that a secret setting holds something: ``${VAR}`` of a variable set to "" gives an
    empty value, which Slack would only refuse at the first alert."""

    def check(value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError(f"expected {what}, got an empty value")
        return value

    return AfterValidator(check)


BotToken = Annotated[SecretStr, _secret("the Slack app's bot token (xoxb-…)")]

#: the hosts of Slack's incoming webhooks (commercial Slack, GovSlack)
WEBHOOK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
#: hosts on this machine, where a webhook may also be served over http (a local relay, a test's server)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WEBHOOK_URL_FORM = "the URL Slack gave for the incoming webhook, https://hooks.slack.com/services/…"


def _webhook_url(url: SecretStr) -> SecretStr:
    """An https URL on Slack's webhook host, or an http(s) URL on this machine. The message says
    what is wrong with the URL but never quotes it: the URL is the webhook's secret."""
    raw = url.get_secret_value()
    parts = urlsplit(raw)
    try:
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        host = None
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        problem = "one with a space, a line break or another unprintable character in it"
    elif parts.scheme not in ("https", "http") or not parts.netloc:
        problem = "a value that does not start with https://"
    elif host is None:
        problem = "a URL whose host or port cannot be read"
    elif host in LOOPBACK_HOSTS:
        return url
    elif parts.scheme != "https":
        problem = "an http:// URL, which would send alerts unencrypted"
    elif host not in WEBHOOK_HOSTS:
        problem = f"a URL on another host than {' or '.join(WEBHOOK_HOSTS)}"
    else:
        return url
    raise ValueError(f"expected {WEBHOOK_URL_FORM}, got {problem} (not shown: it is a secret)")


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
    token: BotToken
    base_url: str | None = None  # another Slack API endpoint (a proxy, an Enterprise Grid gateway)
    timeout_seconds: Float = Field(30.0, gt=0, le=300)
    max_retries: Int = Field(3, ge=0, le=10)

    @property
    def name(self) -> str:
        return f"slack:{self.channel}"


class SlackWebhookSinkConfig(StrictModel):
    """Alerts to the one channel of a Slack incoming webhook: plain messages only (no threads, no
    updates in place, no check for a message already posted). ``url`` is a secret, e.g.
    ``url: ${SLACK_WEBHOOK_URL}``: https on hooks.slack.com (or hooks.slack-gov.com), or http(s)
    on this machine (127.0.0.1, localhost, [::1]); ``label`` names the sink
    (``slack-webhook:<label>``)."""

    type: Literal["slack_webhook"]
    url: Annotated[SecretStr, _secret(WEBHOOK_URL_FORM), AfterValidator(_webhook_url)]
    label: Slug = "default"
    timeout_seconds: Float = Field(30.0, gt=0, le=300)
    max_retries: Int = Field(3, ge=0, le=10)

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


def resolve_sink_name(name: str, file: str | Path) -> str:
    """A sink's name as config writes it, in the form the sinks carry: ``jsonl:PATH`` with PATH
    relative to the config ``file`` made absolute; every other name as it is."""
    if not name.startswith("jsonl:"):
        return name
    path = Path(name.removeprefix("jsonl:")).expanduser()
    return f"jsonl:{path if path.is_absolute() else (Path(file).parent / path).resolve()}"


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
    everything. ``platform`` is the ad platform of the incident's account (google_ads,
    microsoft_ads, meta_ads). ``party`` is the party managing the campaign at onset, or, with ``party_at: now``,
    the party managing it now. ``severity: warning`` matches every incident, ``critical`` the
    critical ones (an incident that becomes critical starts reaching the route then). Routes are
    tried in order; the first that matches decides, unless it says ``continue: true``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    account: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_listed)] = []  # account ids
    platform: Annotated[list[Literal["google_ads", "microsoft_ads", "meta_ads"]], BeforeValidator(_listed)] = []
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

    bot_token: BotToken
    app_token: Annotated[SecretStr, _secret("the app-level token (xapp-…)")] | None = None
    signing_secret: Annotated[SecretStr, _secret("the app's signing secret")] | None = None
    host: str = "0.0.0.0"
    port: Int = Field(3000, ge=0, le=65535)
    path: str = Field("/slack/events", pattern=r"^/[A-Za-z0-9/_.-]*$")
    base_url: str | None = None  # another Slack API endpoint, as for the sinks

    @model_validator(mode="after")
    def _a_way_in(self) -> "SlackAppConfig":
        if self.app_token is None and self.signing_secret is None:
            raise ValueError("expected app_token (Socket Mode) or signing_secret (HTTP requests from Slack), got neither")
        return self


#: a Google Ads campaign in the web interface; {account_id} and {campaign_id} are filled in
GOOGLE_ADS_CAMPAIGN_URL = PLATFORMS["google_ads"].campaign_url
_URL_FIELDS = re.compile(r"\{(account_id|campaign_id)\}")


def _url_template(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("https://"):
        raise ValueError(f"expected an https:// URL, got {value!r}")
    if "{" in _URL_FIELDS.sub("", value) or "}" in _URL_FIELDS.sub("", value):
        raise ValueError(f"expected only {{account_id}} and {{campaign_id}} between braces, got {value!r}")
    return value


def _campaign_urls(value: object) -> object:
    """``alerts.campaign_url``: null, one template, or a template (or null) per platform."""
    if value is None:
        return None
    if isinstance(value, str):
        return _url_template(value)
    if not isinstance(value, dict):
        raise ValueError(f"expected an https:// URL, a URL per platform or null, got {value!r}")
    out: dict[str, str | None] = {}
    for platform, template in value.items():
        if platform not in PLATFORMS:
            raise ValueError(f"expected platforms among {', '.join(PLATFORMS)}, got {platform!r}")
        if template is not None and not isinstance(template, str):
            raise ValueError(f"{platform}: expected an https:// URL or null, got {template!r}")
        try:
            out[platform] = _url_template(template)
        except ValueError as error:
            raise ValueError(f"{platform}: {error}") from None
    return out


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
    group_min_incidents: Int = Field(4, ge=2, le=1000)
    #: a reminder while an incident stays open and unacknowledged, this long after its last
    #: message on a sink; 0 sends none
    repeat_every_hours: Float = Field(24.0, ge=0, le=24 * 90)
    #: the excess cost (account currency) whose crossing updates the alert, ascending
    excess_steps: list[Annotated[Float, Field(gt=0)]] = [1000.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0]
    #: the link to the campaign in the alert: a template for Google Ads campaigns (the other
    #: platforms keep their own), a template per platform (``{google_ads: …, meta_ads: null}``;
    #: a platform left out keeps its own, null turns its links off), or null for no links at all
    campaign_url: Annotated[str | dict[str, str | None] | None, BeforeValidator(_campaign_urls)] = GOOGLE_ADS_CAMPAIGN_URL
    slack_app: SlackAppConfig | None = None

    def campaign_url_for(self, platform: str) -> str | None:
        """The campaign link template for ``platform`` (None: no link)."""
        if platform not in PLATFORMS or self.campaign_url is None:
            return None
        if isinstance(self.campaign_url, str):
            return self.campaign_url if platform == "google_ads" else PLATFORMS[platform].campaign_url
        return self.campaign_url.get(platform, PLATFORMS[platform].campaign_url)

    @field_validator("excess_steps")
    @classmethod
    def _ascending(cls, steps: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"expected ascending amounts, got {steps}")
        return steps
