"""config.yaml as a whole."""

from __future__ import annotations

from pydantic import Field

from anomaly.config.alerts import AlertsConfig
from anomaly.config.base import FilePath, Slug, StrictModel
from anomaly.config.detection import DetectionConfig
from anomaly.config.parties import HandoffConfig, OwnershipConfig, PartyConfig, SettlementConfig
from anomaly.config.service import ServiceConfig, StoreConfig
from anomaly.config.sources import Source


class Config(StrictModel):
    store: StoreConfig = Field(StoreConfig(), validate_default=True)
    parties: dict[Slug, PartyConfig] = {}
    sources: list[Source] = []
    ownership: OwnershipConfig = OwnershipConfig()
    handoff: HandoffConfig = HandoffConfig()
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
