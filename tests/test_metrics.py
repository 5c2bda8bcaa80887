"""Metrics: AP/AUROC identical to scikit-learn, mAP is not pooled AP, pairings, thresholds
chosen on validation reals only, the oracle named as such, and bootstrap CIs that cover."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from detector.metrics import (
    TIDY_COLUMNS,
    MetricsError,
    accuracies,
    auroc,
    average_precision,
    bootstrap_weights,
    evaluate,
    evaluation_json,
    mean_average_precision,
    oracle_threshold,
    per_generator_ap,
    select_threshold,
    summary,
    threshold_at_fpr,
)


@pytest.mark.parametrize("seed", range(5))
def test_ap_and_auroc_equal_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    y[:2] = [0, 1]
    scores = np.round(rng.normal(size=300) + y, 1)  # rounding makes many ties
    assert average_precision(y, scores) == pytest.approx(
        average_precision_score(y, scores), abs=1e-12
    )
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_weighted_ap_equals_ap_of_repeated_rows():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50)
    y[:2] = [0, 1]
    scores = rng.normal(size=50) + y
    counts = rng.integers(0, 4, 50)
    counts[:2] = 1
    repeated = np.repeat(np.arange(50), counts)
    assert average_precision(y, scores, sample_weight=counts) == pytest.approx(
        average_precision_score(y[repeated], scores[repeated]), abs=1e-12
    )
    assert auroc(y, scores, sample_weight=counts) == pytest.approx(
        roc_auc_score(y[repeated], scores[repeated]), abs=1e-12
    )


def test_map_and_pooled_ap_differ_where_they_must():
    # 10 reals; generator A: 90 easy fakes above every real; B: 10 hard fakes below every real.
    reals = np.linspace(0.1, 1.0, 10)
    scores = np.r_[reals, np.full(90, 2.0), np.full(10, -1.0)]
    y = np.r_[np.zeros(10), np.ones(100)].astype(int)
    gen = [None] * 10 + ["A"] * 90 + ["B"] * 10
    table = per_generator_ap(y, scores, gen, n_boot=0)
    ap = dict(zip(table["generator"], table["value"], strict=True))
    assert ap["A"] == pytest.approx(1.0)
    assert ap["B"] == pytest.approx(10 / 20)  # all B fakes ranked last: precision 10/20
    assert mean_average_precision(y, scores, gen) == pytest.approx(0.75)
    pooled = average_precision(y, scores)
    assert pooled == pytest.approx(0.9 + 0.1 * 100 / 110)
    assert pooled > 0.98 > 0.75
    full = evaluate(y, scores, gen, n_boot=0)
    s = summary(full)
    assert s["mAP"]["value"] == pytest.approx(0.75)
    assert s["pooled_ap"]["value"] == pytest.approx(pooled)


def test_matched_pairing_uses_the_reals_of_the_same_group():
    # reals of source s1 score low, of s2 high; G's fakes come from s1 only, scored in between
    y = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9, 0.5, 0.6])
    group = np.array(["s1", "s1", "s2", "s2", "s1", "s1"])
    gen = [None, None, None, None, "G", "G"]
    shared = per_generator_ap(y, scores, gen, pairing="shared", n_boot=0)
    matched = per_generator_ap(y, scores, gen, pairing="matched", group=group, n_boot=0)
    assert shared["value"].iloc[0] < 1.0
    assert matched["value"].iloc[0] == pytest.approx(1.0)
    assert matched["n_real"].iloc[0] == 2 and shared["n_real"].iloc[0] == 4
    with pytest.raises(MetricsError, match="matched pairing needs a group"):
        per_generator_ap(y, scores, gen, pairing="matched")


def test_generator_without_matched_reals_is_listed_and_left_out_of_map():
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.9, 0.8])
    group = np.array(["s1", "s1", "s1", "s9"])
    table = per_generator_ap(
        y, scores, [None, None, "A", "B"], pairing="matched", group=group, n_boot=50
    )
    row_b = table[table["generator"] == "B"].iloc[0]
    assert np.isnan(row_b["value"]) and "no matched reals" in row_b["note"]
    row_map = table[table["metric"] == "mAP"].iloc[0]
    assert row_map["value"] == pytest.approx(1.0) and "without: B" in row_map["note"]


def test_unnamed_generators_are_unknown():
    y = np.array([0, 0, 1, 1])
    table = per_generator_ap(y, [0.1, 0.2, 0.3, 0.4], [None, None, None, ""], n_boot=0)
    assert table["generator"].iloc[0] == "unknown"


def test_unknown_is_reported_but_left_out_of_map_unless_asked():
    y = np.array([0] * 6 + [1] * 6)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.95, 0.99, 0.05, 0.15, 0.25])
    gen = [None] * 6 + ["A"] * 3 + [None] * 3  # three named fakes, three unnamed
    table = per_generator_ap(y, scores, gen, n_boot=0)
    unknown = table[table["generator"] == "unknown"].iloc[0]
    assert unknown["value"] < 0.5 and "not in mAP" in unknown["note"]
    row_map = table[table["metric"] == "mAP"].iloc[0]
    assert row_map["value"] == pytest.approx(1.0)  # A alone
    assert row_map["note"].startswith("mean over 1 generators; without: unknown")
    both = per_generator_ap(y, scores, gen, n_boot=0, include_unknown=True)
    row_map = both[both["metric"] == "mAP"].iloc[0]
    assert row_map["value"] == pytest.approx((1.0 + unknown["value"]) / 2)
    assert row_map["note"] == "mean over 2 generators"


def test_bootstrap_keeps_pair_groups_together():
    from detector.metrics import bootstrap_weights

    strata = ["real", "A", "real", "A", "real", "A", "real"]
    pairs = ["p1", "p1", "p2", "p2", None, None, None]
    for w in bootstrap_weights(strata, 200, seed=3, groups=pairs):
        np.testing.assert_array_equal(w[:, 0], w[:, 1])
        np.testing.assert_array_equal(w[:, 2], w[:, 3])
        # the two pairs form one stratum of two units: together they are drawn twice
        np.testing.assert_array_equal(w[:, 0] + w[:, 2], 2)
        # unpaired reals (one stratum of two) and the unpaired fake keep their counts
        np.testing.assert_array_equal(w[:, 4] + w[:, 6], 2)
        np.testing.assert_array_equal(w[:, 5], 1)
    free = np.vstack(list(bootstrap_weights(strata, 200, seed=3)))
    assert (free[:, 0] != free[:, 1]).any()  # without pair ids, images are drawn alone


def test_threshold_is_chosen_on_validation_reals_only():
    rng = np.random.default_rng(0)
    p_real = rng.uniform(size=200)
    y = np.r_[np.zeros(200), np.ones(50)].astype(int)
    a = select_threshold(y, np.r_[p_real, rng.uniform(size=50)], target_fpr=0.05)
    b = select_threshold(y, np.r_[p_real, np.zeros(50)], target_fpr=0.05)
    assert a["threshold"] == b["threshold"]  # the fakes do not matter
    assert np.mean(p_real > a["threshold"]) <= 0.05
    assert a["n_real"] == 200 and a["validation_fpr"] <= 0.05
    assert threshold_at_fpr([0.2, 0.9, 0.4], 0.0) == 0.9
    none = select_threshold([1, 1], [0.3, 0.7])
    assert none["threshold"] == 0.5 and "no validation reals" in none["rule"]


def test_oracle_threshold_appears_only_under_its_name():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    scores = rng.normal(size=200) + 2 * y
    plain = evaluate(y, scores, None, n_boot=0)
    assert set(plain["threshold_name"].dropna()) == {"0.5"}
    with_val = evaluate(y, scores, None, threshold=0.3, n_boot=0)
    assert set(with_val["threshold_name"].dropna()) == {"0.5", "validation"}
    with_oracle = evaluate(y, scores, None, threshold=0.3, oracle=True, n_boot=0)
    assert set(with_oracle["threshold_name"].dropna()) == {"0.5", "validation", "oracle"}
    t = oracle_threshold(y, 1 / (1 + np.exp(-scores)))
    oracle_rows = with_oracle[with_oracle["threshold_name"] == "oracle"]
    assert oracle_rows["threshold"].iloc[0] == pytest.approx(t)
    best = accuracies(y, 1 / (1 + np.exp(-scores)), t)["balanced_accuracy"]
    for other in (0.3, 0.5, 0.7):
        assert best >= accuracies(y, 1 / (1 + np.exp(-scores)), other)["balanced_accuracy"]


def test_accuracies_report_real_and_fake_separately():
    acc = accuracies([0, 0, 0, 1], [0.1, 0.6, 0.2, 0.9], 0.5)
    assert acc["real_accuracy"] == pytest.approx(2 / 3)
    assert acc["fake_accuracy"] == pytest.approx(1.0)
    assert acc["accuracy"] == pytest.approx(3 / 4)
    assert acc["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)


def test_bootstrap_is_stratified_and_seeded():
    strata = np.array(["real"] * 5 + ["A"] * 3 + ["B"])
    a = np.vstack(list(bootstrap_weights(strata, 100, seed=4, chunk=30)))
    b = np.vstack(list(bootstrap_weights(strata, 100, seed=4, chunk=30)))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (100, 9)
    assert (a[:, :5].sum(axis=1) == 5).all() and (a[:, 5:8].sum(axis=1) == 3).all()
    assert (a[:, 8] == 1).all()


def test_confidence_intervals_cover_the_true_ap_at_about_the_nominal_rate():
    # binormal scores, equal classes: the population AP follows from the two normal curves
    mu, n, sims = 1.0, 200, 200
    t = np.linspace(-8, 9, 200_001)
    tpr, fpr = norm.sf(t - mu), norm.sf(t)
    precision = tpr / (tpr + fpr)
    true_ap = float(np.sum(-np.diff(tpr) * precision[1:]))
    rng = np.random.default_rng(1)
    covered = 0
    y = np.r_[np.zeros(n), np.ones(n)].astype(int)
    for s in range(sims):
        scores = np.r_[rng.normal(size=n), rng.normal(mu, size=n)]
        row = per_generator_ap(y, scores, ["g"] * (2 * n), n_boot=200, seed=s).iloc[0]
        covered += row["ci_low"] <= true_ap <= row["ci_high"]
    assert 0.88 <= covered / sims <= 0.99


def test_tiny_groups_do_not_crash_and_empty_classes_are_explained():
    y = np.array([0, 0, 0, 1, 1])
    gen = [None, None, None, "solo", "pair"]
    table = evaluate(y, [0.1, 0.5, 0.2, 0.7, 0.4], gen, threshold=0.6, n_boot=100)
    solo = table[(table["metric"] == "ap") & (table["generator"] == "solo")].iloc[0]
    assert solo["value"] == pytest.approx(1.0) and solo["n_fake"] == 1
    # one fake: a resample cannot show how AP varies with the fakes, so no interval
    assert np.isnan(solo["ci_low"]) and np.isnan(solo["ci_high"])
    assert solo["note"] == "too few fakes (1) for a confidence interval"
    with pytest.raises(MetricsError, match="no real images"):
        evaluate([1, 1], [0.2, 0.3], ["a", "b"], what="split 'test'")
    with pytest.raises(MetricsError, match="no synthetic images"):
        evaluate([0, 0], [0.2, 0.3], None)
    with pytest.raises(MetricsError, match="labels"):
        evaluate([0, 2], [0.2, 0.3], None)


def test_tidy_table_and_json():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    gen = [None] * 30 + ["A"] * 15 + ["B"] * 15
    scores = rng.normal(size=60) + y
    table = evaluate(y, scores, gen, threshold=0.4, n_boot=50)
    # the published layout (the CSV of ``eval --out``), each column holding what it names
    assert list(table.columns) == TIDY_COLUMNS
    (ap_a,) = table[(table["metric"] == "ap") & (table["generator"] == "A")].itertuples()
    assert (ap_a.n_real, ap_a.n_fake) == (30, 15)  # A's fakes against all the reals
    assert ap_a.value == pytest.approx(average_precision_score(y[:45], scores[:45]))
    assert ap_a.ci_low <= ap_a.value <= ap_a.ci_high
    assert pd.isna(ap_a.threshold_name) and pd.isna(ap_a.threshold) and ap_a.note is None
    at_validation = table[
        (table["metric"] == "accuracy") & (table["threshold_name"] == "validation")
    ]
    (accuracy,) = at_validation.itertuples()
    assert (accuracy.threshold, accuracy.n_real, accuracy.n_fake) == (0.4, 30, 30)
    assert pd.isna(accuracy.generator)
    assert table.loc[table["metric"] == "mAP", "note"].item() == "mean over 2 generators"
    metrics = "ap mAP pooled_ap auroc accuracy balanced_accuracy real_accuracy fake_accuracy"
    assert list(table["metric"].unique()) == metrics.split()  # each of them, in this order
    doc = evaluation_json(table, split="test")
    text = json.dumps(doc, allow_nan=False)
    assert '"mAP"' in text and doc["split"] == "test"
    assert {r["generator"] for r in doc["per_generator"]} == {"A", "B"}
    assert "fake_accuracy@validation" in doc["summary"]


def test_a_generator_of_one_image_gets_a_caveat():
    from detector.metrics import small_group_note

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(30), np.ones(30), np.ones(1)].astype(int)
    gens = np.array([None] * 30 + ["big"] * 30 + ["lonely"], dtype=object)
    table = per_generator_ap(y, rng.normal(size=len(y)) + y, gens, n_boot=0)
    ap = table[table["metric"] == "ap"].set_index("generator")
    assert "1 fake" in ap.loc["lonely", "note"] and "too few" in ap.loc["lonely", "note"]
    assert pd.isna(ap.loc["big", "note"])
    assert small_group_note(5, 5) is None and small_group_note(4, 100).startswith("only 4")
