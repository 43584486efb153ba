"""The int8 budget's decision rule: per-sample pairing over contexts, and what it decides on
a small val split (a reduced run of bench/studies/small_budget.py on real artifacts)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOTS, needs_full_data

from edgerf.configs import Budget
from edgerf.export.quantize import paired_acc_p_drop


def test_a_sample_met_in_several_contexts_counts_once():
    # sample 0 lost in 2 of 4 contexts, sample 1 always right, sample 2 won back once
    ids = np.array([0, 1, 2] * 4)
    ref = np.ones(12, int)
    plan = np.ones(12, int)
    plan[[0, 3]] = 0                        # sample 0, contexts 0 and 1
    ref[[8]] = 0                            # sample 2, context 2: fp32 wrong, the plan right
    p = paired_acc_p_drop(ref, plan, np.ones(12, int), ids)
    assert p["samples"] == 3 and p["contexts"] == 4 and p["decisions"] == 12 and p["discordant"] == 3
    assert p["drop"] == pytest.approx((0.5 + 0 - 0.25) / 3)
    # without ids every decision is a sample of its own
    assert paired_acc_p_drop(ref, plan, np.ones(12, int))["samples"] == 12


def test_losses_in_every_context_do_not_widen_the_noise_of_equivalence():
    rng = np.random.default_rng(0)
    n, k = 300, 8
    ids = np.tile(np.arange(n), k)
    ref = np.ones(n * k, int)
    plan = ref.copy()
    flips = rng.random(n * k) < 0.02        # contextual flips, both ways
    plan[flips & (rng.random(n * k) < 0.5)] = 0
    ref[flips & (plan == 1)] = 0
    equal = paired_acc_p_drop(ref, plan, np.ones(n * k, int), ids)
    worse = plan.copy()
    worse[np.isin(ids, np.arange(6))] = 0   # 6 samples (2 pt) lost in every context
    lost = paired_acc_p_drop(ref, worse, np.ones(n * k, int), ids)
    assert lost["se"] > 2 * equal["se"]                       # the plain spread grows with the losses ...
    assert lost["se_null"] == pytest.approx(equal["se_null"], rel=0.3)   # ... the equivalence noise does not
    b = Budget()
    assert b.accepts_decisions(equal) and not b.accepts_decisions(lost)


def test_the_rule_adapts_to_what_the_check_can_resolve():
    b = Budget()
    big, small = b.power(0.0005), b.power(0.006)              # se 0.05 pt (thousands of samples) and 0.6 pt
    assert big["decides_at"] == b.max_acc_p_drop               # a big check: the budget as written
    assert b.max_acc_p_drop < small["decides_at"] <= b.max_acc_p_drop_upper
    assert small["detectable_drop"] > big["detectable_drop"]
    assert big["equivalent_passes"] > 0.99 and small["equivalent_passes"] >= 0.89
    assert b.power(float("nan"))["decides_at"] == b.max_acc_p_drop     # no decision won back: the budget alone
    # no decision changed: the normal approximation says nothing, the sample count does (a
    # 2-sample check claimed to detect 0.5 point drops)
    seen = [b.power(0.0, n)["detectable_drop"] for n in (2, 20, 256, 3282)]
    assert seen == sorted(seen, reverse=True) and seen[0] > 0.5 and 0.005 < seen[-1] < 0.01
    changed = {"drop": 0.0, "se_null": 0.001, "decision_agreement": 1 - b.max_decisions_changed - 0.01}
    assert not b.accepts_decisions(changed)                    # many decisions changed: over budget whatever acc_p


@pytest.mark.slow
@needs_full_data
def test_on_small_splits_an_equivalent_plan_passes_and_a_worse_one_fails():
    """Reduced simulation: kws-gru's real fp32 and int8 decisions over 8 contexts of the held-out
    speakers, 150 splits of 256 samples (the full study: 16 contexts, 1,000 splits)."""
    from edgerf.bench.studies import small_budget
    o = small_budget.outcomes("kws-gru", "litert", 8, str(ROOTS["Speech Commands"]), log=lambda s: None)
    rows = {(r["plan"], r["contexts"]): r for r in small_budget.simulate(o, 256, 150, 8)}
    assert rows[("equivalent", 8)]["passes"] >= 0.85
    assert rows[("2 pt worse", 8)]["passes"] <= 0.15
    assert rows[("equivalent", 1)]["old_rule_passes"] <= 0.5     # what the old single-stream check did
