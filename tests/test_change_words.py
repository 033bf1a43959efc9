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


@pytest.mark.parametrize(
    ("resource_type", "event", "changed_fields", "words"),
    [
        ("META_CAMPAIGN", "update_campaign_budget", "daily_budget: 1300.00 -> 2500.00", "Budget raised from $1,300 to $2,500 a day"),
        ("META_AD_SET", "update_ad_set_budget", "daily_budget: 300.00 -> 150.00", "Ad set budget lowered from $300 to $150 a day"),
        ("META_AD_SET", "update_ad_set_budget", "lifetime_budget: 1000.00 -> 1500.00", "Ad set lifetime budget raised from $1,000 to $1,500"),
        ("META_AD_SET", "update_ad_set_bid_strategy", "bid_strategy: LOWEST_COST_WITHOUT_CAP -> COST_CAP",
         "Bid strategy: Highest volume → Cost per result goal"),
        ("META_AD_SET", "update_ad_set_bid_strategy", "bid_strategy: Lowest cost -> Bid cap", "Bid strategy: Lowest cost → Bid cap"),
        ("META_AD_SET", "update_ad_set_bidding", "bid_amount: 6.26 -> 5.04", "Ad set bid: $6.26 → $5.04"),
        ("META_CAMPAIGN", "update_campaign_run_status", "status: Active -> Paused", "Paused the campaign"),
        ("META_AD", "update_ad_run_status", "status: Inactive -> Active", "Turned on the ad"),
        ("META_AD_ACCOUNT", "ad_account_update_status", "status: Active -> Disabled", "Account status: Active → Disabled"),
        ("META_AD_ACCOUNT", "ad_account_update_spend_limit", "spend_cap: 1000.00 -> 5000.00", "Account spending limit: $1,000 → $5,000"),
        ("META_CAMPAIGN", "update_campaign_name", "name: Leads US -> Leads US v2", "Renamed the campaign: Leads US → Leads US v2"),
        ("META_CAMPAIGN", "create_campaign_group", "", "Created the campaign"),
        ("META_AD_ACCOUNT", "ad_account_add_user_to_role", "Added user to ad account", "Gave a user access to the account"),
        ("META_AD_SET", "update_ad_set_duration", "Edited ad set schedule", "Edited ad set schedule"),  # Meta's own words
        ("META_AD_SET", "update_ad_set_min_spend_target", "", "Update ad set min spend target"),
    ],
)
def test_a_meta_activity_reads_in_words(resource_type, event, changed_fields, words):
    change = {"resource_type": resource_type, "operation": event, "changed_fields": changed_fields}
    assert describe(change, "USD", money) == words
