"""Change-history entries in words: what a CMO reads instead of API names."""

from __future__ import annotations

import pytest

from anomaly.alerts.change_words import describe
from anomaly.alerts.render import money


@pytest.mark.parametrize(
    ("resource_type", "operation", "changed_fields", "words"),
    [
        ("CAMPAIGN_BUDGET", "UPDATE", "amount_micros: 1300000000 -> 2500000000", "Budget raised from $1,300 to $2,500 a day"),
        ("CAMPAIGN_BUDGET", "UPDATE", "campaign_budget.amount: 300.00 -> 150.00", "Budget lowered from $300 to $150 a day"),
        ("CAMPAIGN", "UPDATE", "bidding_strategy_type: MAXIMIZE_CONVERSIONS -> MAXIMIZE_CLICKS", "Bid strategy: Maximize conversions → Maximize clicks"),
        ("CAMPAIGN", "UPDATE", "campaign.bidding_strategy_type: TARGET_CPA -> MAXIMIZE_CONVERSIONS", "Bid strategy: Target cpa → Maximize conversions"),
        ("CAMPAIGN", "UPDATE", "campaign.target_cpa.target_cpa_micros: 50000000 -> 80000000", "Target cost per lead: $50.00 → $80.00"),
        ("CAMPAIGN", "UPDATE", "campaign.maximize_conversion_value.target_roas: 4.0 -> 3.0", "Target return on ad spend: 400% → 300%"),
        ("AD_GROUP", "UPDATE", "ad_group.cpc_bid: 6.26 -> 5.04", "Max cost per click: $6.26 → $5.04"),
        ("AD_GROUP_CRITERION", "UPDATE", "keyword.match_type: PHRASE -> BROAD (38 keywords)", "Match type: phrase → broad (38 keywords)"),
        ("CAMPAIGN", "UPDATE", "campaign.status: ENABLED -> PAUSED", "Paused the campaign"),
        ("CUSTOMER_USER_ACCESS", "CREATE", "access_role: ADMIN (Beacon Reach)", "Gave Beacon Reach admin access to the account"),
        ("CUSTOMER_USER_ACCESS", "REMOVE", "access_role: STANDARD", "Removed a user's standard access to the account"),
        ("AD_GROUP_CRITERION", "CREATE", "ad_group_criterion.keyword.text", "Added a keyword"),
        ("CAMPAIGN_BUDGET", "UPDATE", "campaign_budget.amount_micros", "Budget changed"),
        ("AD_GROUP_AD", "UPDATE", "ad_group_ad.ad.final_urls", "Ad: final urls changed"),
        ("CAMPAIGN", "CREATE", "", "Campaign added"),
        ("CAMPAIGN", "UPDATE", "bid strategy", "bid strategy"),  # free text stays as the history gave it
        ("CAMPAIGN_BUDGET", "UPDATE", "amount: 1,300.00 -> 2,500.00, name: Main -> Main 2", "Budget raised from $1,300 to $2,500 a day; name: Main → Main 2"),
    ],
)
def test_a_change_reads_in_words(resource_type, operation, changed_fields, words):
    change = {"resource_type": resource_type, "operation": operation, "changed_fields": changed_fields}
    assert describe(change, "USD", money) == words


def test_amounts_are_in_the_accounts_currency():
    change = {"resource_type": "CAMPAIGN_BUDGET", "operation": "UPDATE", "changed_fields": "amount: 100.00 -> 250.00"}
    assert describe(change, "EUR", money) == "Budget raised from €100 to €250 a day"
    assert describe(change, "CHF", money) == "Budget raised from 100 CHF to 250 CHF a day"
