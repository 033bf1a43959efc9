"""The auction-world portfolio generator (``benchmarks.synth_auction``) on small portfolios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly.schema import CHANGE_COLUMNS, DAILY, METRIC_COLUMNS, OWNERSHIP_COLUMNS, normalise_metrics
from benchmarks import synth_auction as auction
from benchmarks.score import oracle_row
from benchmarks.synth import BENIGN_COLUMNS, SPIKE_FACTORS, TRUTH_COLUMNS, Portfolio

SEED = 7
SIZE = {"n_accounts": 12, "days": 120}
START = "2026-01-05"
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def world():
    return auction._world(SEED, SIZE["n_accounts"], SIZE["days"], START)


@pytest.fixture(scope="module")
def portfolio(world) -> Portfolio:
    return auction.generate(SEED, **SIZE)


@pytest.fixture(scope="module")
def final(portfolio: Portfolio) -> pd.DataFrame:
    """Every lead in: the panel as known a week after its last day."""
    return auction.metrics_as_of(SEED, portfolio.end + 7 * DAY, **SIZE)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return auction.change_log(SEED, **SIZE)


def managing_party(ownership: pd.DataFrame, account_id: str, day: pd.Timestamp) -> str:
    periods = ownership[(ownership["account_id"] == account_id) & (ownership["start"] <= day)]
    periods = periods[periods["end"].isna() | (periods["end"] > day)]
    return str(periods["party"].iloc[-1])


def test_the_same_seed_gives_the_same_portfolio_and_another_seed_another():
    auction._CACHE.clear()
    first = auction.generate(SEED, **SIZE)
    auction._CACHE.clear()
    again = auction.generate(SEED, **SIZE)
    for name in ("metrics", "changes", "ownership", "truth", "benign"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    other = auction.generate(SEED + 1, **SIZE)
    assert not first.metrics["spend"].equals(other.metrics["spend"])


def test_frames_have_the_canonical_columns_and_dtypes(portfolio: Portfolio, world):
    assert isinstance(portfolio, Portfolio)
    metrics = portfolio.metrics
    assert list(metrics.columns) == METRIC_COLUMNS
    pd.testing.assert_frame_equal(metrics, normalise_metrics(metrics))
    assert (metrics["hour"] == DAILY).all()
    assert not metrics.duplicated(["account_id", "campaign_id", "date"]).any()
    assert list(portfolio.changes.columns) == CHANGE_COLUMNS
    assert list(portfolio.ownership.columns) == OWNERSHIP_COLUMNS
    assert list(portfolio.truth.columns) == TRUTH_COLUMNS + ["campaigns"]
    assert list(portfolio.benign.columns) == BENIGN_COLUMNS
    assert portfolio.eval_start == pd.Timestamp(START) + auction.EVAL_DAY * DAY
    assert portfolio.end == pd.Timestamp(START) + (SIZE["days"] - 1) * DAY
    per_account = metrics.groupby("account_id")["campaign_id"].nunique()
    assert per_account.between(2, 12).all() and len(per_account) == SIZE["n_accounts"]
    assert (metrics["leads"] >= 0).all()
    assert (metrics["leads"] % 1 != 0).any(), "data-driven attribution gives fractional leads"


def test_spend_is_clicks_times_cost_per_click(final: pd.DataFrame):
    assert (final.loc[final["clicks"] == 0, "spend"] == 0).all()
    by_campaign = final.groupby("campaign_id")
    clicks = by_campaign["clicks"].mean()
    spend_cv = by_campaign["spend"].std() / by_campaign["spend"].mean()
    small, large = clicks < 10, clicks >= 50
    assert small.mean() > 0.05 and large.any()
    assert spend_cv[small].median() > 1.5 * spend_cv[large].median()
    day_to_day = final[final["campaign_id"].isin(clicks[small].index)].sort_values("date").groupby("campaign_id")["spend"].pct_change() + 1
    assert ((day_to_day >= 2) | (day_to_day <= 0.5)).mean() > 0.25, "a few-click campaign's spend often doubles or halves"


def test_no_day_spends_more_than_twice_the_budget_and_capped_ones_spend_about_it(world):
    layout = world.layout
    group_spend = np.add.reduceat(world.spend, layout.group_first, axis=1)
    assert (group_spend <= 2 * world.budget + 1e-9).all()
    capped = layout.capped[layout.group_first]
    running = np.add.reduceat(world.active.astype(int), layout.group_first, axis=1) > 0
    over = (group_spend > world.budget)[:, capped] & running[:, capped]
    assert over.mean() > 0.05, "capped days overdeliver now and then"
    ratio = group_spend[:, capped].sum(axis=0) / (world.budget * running)[:, capped].sum(axis=0)
    assert (ratio < 1.05).all() and 0.8 <= np.median(ratio) <= 1.0, ratio
    assert 0.3 <= layout.capped.mean() <= 0.5


def test_shared_budget_holds_its_total_while_its_campaigns_trade_spend(world):
    layout = world.layout
    sizes = np.bincount(layout.group_of)
    shared = np.nonzero(sizes > 1)[0]
    assert len(shared)
    for g in shared:
        members = np.nonzero(layout.group_of == g)[0]
        days = world.active[:, members].all(axis=1)
        spend = world.spend[days][:, members]
        total = spend.sum(axis=1)
        assert total.std() / total.mean() < (spend.std(axis=0) / spend.mean(axis=0)).mean()
        assert (total <= 2 * world.budget[days, g] + 1e-9).all()


def test_the_last_week_of_leads_is_incomplete_and_the_last_day_partial(portfolio: Portfolio, final: pd.DataFrame):
    key = ["campaign_id", "date"]
    as_of_end = auction.metrics_as_of(SEED, portfolio.end, **SIZE)
    before_last = portfolio.metrics["date"] < portfolio.end
    earlier = as_of_end[as_of_end["date"] < portfolio.end].reset_index(drop=True)
    pd.testing.assert_frame_equal(portfolio.metrics[before_last].reset_index(drop=True), earlier)

    last = portfolio.metrics[~before_last].set_index("campaign_id")
    whole = as_of_end[as_of_end["date"] == portfolio.end].set_index("campaign_id").loc[last.index]
    assert 0.45 <= last["spend"].sum() / whole["spend"].sum() <= 0.95
    assert (last["clicks"] <= whole["clicks"]).all() and (last["spend"] <= whole["spend"] + 1e-9).all()

    joined = portfolio.metrics.merge(final, on=key, suffixes=("", "_final"))
    assert len(joined) == len(portfolio.metrics)
    settled = joined["date"] <= portfolio.end - auction.MAX_LAG_DAYS * DAY
    assert np.allclose(joined.loc[settled, "leads"], joined.loc[settled, "leads_final"], atol=0.011)
    recent = joined[~settled]
    assert (recent["leads"] <= recent["leads_final"] + 0.011).all()
    assert recent["leads"].sum() < 0.9 * recent["leads_final"].sum()
    pd.testing.assert_frame_equal(final.drop(columns="leads"), as_of_end.drop(columns="leads"))


def test_leads_known_on_an_earlier_day_are_those_reported_by_then(portfolio: Portfolio, final: pd.DataFrame):
    same_day, whole_day = 0.0, 0.0
    for as_of in pd.date_range(portfolio.end - 40 * DAY, periods=8, freq="3D"):
        known = auction.metrics_as_of(SEED, as_of, **SIZE)
        assert known["date"].max() == as_of
        joined = known.merge(final, on=["campaign_id", "date"], suffixes=("", "_final"))
        assert len(joined) == len(known)
        for column in ("spend", "clicks", "impressions"):
            assert (joined[column] == joined[f"{column}_final"]).all()
        old = joined["date"] <= as_of - auction.MAX_LAG_DAYS * DAY
        assert np.allclose(joined.loc[old, "leads"], joined.loc[old, "leads_final"], atol=0.011)
        assert (joined["leads"] <= joined["leads_final"] + 0.011).all()
        today = joined[joined["date"] == as_of]
        same_day += today["leads"].sum()
        whole_day += today["leads_final"].sum()
    assert 0.5 <= same_day / whole_day <= 0.8, "55–70% of leads are reported on their click's day"
    assert auction.metrics_as_of(SEED, pd.Timestamp(START) - DAY, **SIZE).empty


def test_paused_and_launched_campaigns_have_no_rows_while_off(portfolio: Portfolio, log: pd.DataFrame):
    benign, metrics = portfolio.benign, portfolio.metrics
    pauses, launches = benign[benign["kind"] == "pause"], benign[benign["kind"] == "launch"]
    assert len(pauses) and len(launches)
    status = log[log["changed_fields"].str.startswith("campaign.status")]
    for pause in pauses.itertuples():
        back = pause.day + int(pause.factor) * DAY
        days = metrics.loc[metrics["campaign_id"] == pause.campaign_id, "date"]
        assert not days.between(pause.day, back - DAY).any()
        assert (days == pause.day - DAY).any() and (days == back).any()
        changes = status[status["campaign_id"] == pause.campaign_id]
        assert ((changes["changed_at"].dt.normalize() == pause.day) & (changes["new_value"] == "PAUSED")).any()
        assert ((changes["changed_at"].dt.normalize() == back) & (changes["new_value"] == "ENABLED")).any()
    for launch in launches.itertuples():
        days = metrics.loc[metrics["campaign_id"] == launch.campaign_id, "date"]
        assert days.min() == launch.day
        created = status[(status["campaign_id"] == launch.campaign_id) & (status["operation"] == "CREATE")]
        assert (created["changed_at"].dt.normalize() == launch.day).all() and len(created) == 1


def test_budget_changes_are_in_the_change_log_with_their_values_and_author(portfolio: Portfolio, log: pd.DataFrame):
    assert list(log.columns) == CHANGE_COLUMNS + ["old_value", "new_value"]
    budgets = log[(log["resource_type"] == "CAMPAIGN_BUDGET") & (log["operation"] == "UPDATE")]
    steps = portfolio.benign[portfolio.benign["kind"].isin(["budget_change", "budget_shift"])]
    assert len(steps) >= SIZE["n_accounts"]
    for step in steps.itertuples():
        rows = budgets[(budgets["campaign_id"] == step.campaign_id) & (budgets["changed_at"].dt.normalize() == step.day)]
        assert len(rows) >= 1
        ratio = rows["new_value"].astype(float) / rows["old_value"].astype(float)
        assert np.isclose(ratio, step.factor).any()
        party = managing_party(portfolio.ownership, step.account_id, step.day)
        assert rows["user_email"].str.endswith("@" + auction.PARTIES[party]["domains"][0]).all()
    factors = portfolio.benign.loc[portfolio.benign["kind"] == "budget_change", "factor"]
    assert factors.between(0.45, 2.6).all()
    strategies = log[log["changed_fields"].str.startswith("campaign.bidding_strategy_type")]
    for learning in portfolio.benign[portfolio.benign["kind"] == "learning_period"].itertuples():
        rows = strategies[(strategies["campaign_id"] == learning.campaign_id) & (strategies["changed_at"].dt.normalize() == learning.day)]
        assert len(rows) == 1 and rows["old_value"].iloc[0] != rows["new_value"].iloc[0]
        assert 1.2 <= learning.factor <= 1.8


def test_incidents_are_placed_by_the_rules(portfolio: Portfolio):
    truth = portfolio.truth
    assert set(truth["cls"]) == {"spike", "tracking_loss", "creep", "spend_runaway"}
    assert set(truth.loc[truth["cls"] == "spike", "magnitude"]) <= set(SPIKE_FACTORS)
    assert (truth["onset"] >= portfolio.eval_start).all()
    assert (truth["onset"] <= portfolio.end - auction.MIN_DAYS_SHOWN * DAY).all()
    spans = truth.explode("campaigns").sort_values("onset")
    for _, own in spans.groupby("campaigns"):
        gaps = (own["onset"].iloc[1:].to_numpy() - own["end"].iloc[:-1].to_numpy()) / DAY
        assert (gaps > auction.SEPARATION_DAYS).all()
    losses = truth[truth["cls"] == "tracking_loss"]
    assert (losses["campaigns"].map(len) >= 2).all()
    assert ((losses["scope"] == "account") == (losses["campaign_id"] == "")).all()
    for t in truth.itertuples():
        assert t.party == managing_party(portfolio.ownership, t.account_id, t.onset)
        if t.scope == "campaign":
            assert t.campaign_id == t.campaigns[0]
    assert truth.loc[truth["cls"] == "spike", "after_handoff"].any()
    creeps = truth[truth["cls"] == "creep"]
    assert creeps["magnitude"].between(0.03, 0.06).all() and creeps["doubles_on"].notna().any()


def test_the_truth_counts_real_excess_and_the_oracle_scores_it(portfolio: Portfolio):
    truth = portfolio.truth
    spikes = truth[truth["cls"] == "spike"]
    big = spikes[(spikes["magnitude"] >= 3) & (spikes["base_leads_per_day"] >= 1)]
    assert len(big) and (big["true_excess"] > 0).all()
    assert (spikes["true_excess"] > 0).mean() >= 0.8
    assert (truth.loc[truth["cls"] == "tracking_loss", "true_excess"] > 0).all()
    row = oracle_row(truth, portfolio.metrics)
    assert 0 <= row["recall"] <= 1


def test_price_multiplier_gives_the_cost_per_click_asked_for():
    e = 0.4
    uncapped = auction._price_multiplier(np.array([2.0, 3.0]), np.array([1.0, 1.0]), np.array([4.0, 4.0]), e)
    assert np.allclose(uncapped, [2.0, 3.0], rtol=1e-6)
    capped = auction._price_multiplier(np.array([2.0]), np.array([1.0]), np.array([0.6]), e)
    assert np.allclose(capped, 2.0 ** (1 + e), rtol=1e-6)
    beyond = auction._price_multiplier(np.array([5.0]), np.array([1.0]), np.array([2.0]), e)
    assert 5.0 < beyond[0] < 5.0 ** (1 + e)
