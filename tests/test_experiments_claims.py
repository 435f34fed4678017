"""The claims' verdicts on constructed results: paired seeds, 95% intervals, margins."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import pytest

from tvlars.experiments.claims import (
    DIVERGENCE_PENALTY,
    HOLDS,
    NOT_HOLD,
    PART,
    UNDECIDED_VERDICT,
    UNTESTED,
    Comparison,
    _margin_note,
    claim_higher_lr_better,
    claim_init_irrelevant,
    claim_lamb_weak,
    claim_lambda_by_batch,
    claim_nowa_unstable,
    claim_tvlars_beats_lars,
    claim_tvlars_converges_faster,
    combine,
    deciding,
    epoch_margin,
)
from tvlars.experiments.grid import method_settings
from tvlars.experiments.records import Run, group_runs
from tvlars.experiments.stats import (
    EQUIVALENT,
    HIGHER,
    LOWER,
    MIN_SEEDS,
    UNDECIDED,
    paired,
    stat,
    t_quantile_975,
)
from tvlars.experiments.tables import cell_text

EPOCHS = 10
SEEDS = (0, 1, 2)


def make_run(
    method,
    batch,
    lr,
    seed,
    accuracy,
    *,
    init="xavier_uniform",
    lmbda=1e-4,
    tv_decay=None,
    paper_lambda=None,
    diverged=False,
    curve=None,
    optimizer_lr=None,
    excluded=1.0,
):
    """A finished classification run whose test accuracy climbs to ``accuracy`` over the
    first half (``curve`` overrides it)."""
    optimizer, schedule = method_settings(method)
    curve = list(curve or [accuracy * min(1.0, (e + 1) / (EPOCHS / 2)) for e in range(EPOCHS)])
    curve[-1] = accuracy
    return Run(
        run_id=f"{method}-{batch}-{lr}-{seed}-{init}-{lmbda}",
        folder=Path("."),
        state="diverged" if diverged else "finished",
        task="classification",
        method=method,
        dataset="mnist1d",
        batch_size=batch,
        lr=lr,
        seed=seed,
        init=init,
        optimizer=optimizer,
        schedule=schedule,
        lmbda=lmbda,
        tv_decay=tv_decay,
        plan_lmbda=lmbda,
        paper_lambda=paper_lambda,
        excluded_lr_scale=excluded,
        epochs=EPOCHS,
        steps_per_epoch=50_000 // batch,
        final_acc=accuracy,
        best_acc=max(curve),
        diverged=diverged,
        metrics=[{"epoch": e + 1, "test_acc": a} for e, a in enumerate(curve)],
        optimizer_lr=optimizer_lr if optimizer_lr is not None else lr,
    )


def arm_runs(method, batch, lr, accuracies, **kwargs):
    return [make_run(method, batch, lr, s, a, **kwargs) for s, a in enumerate(accuracies)]


# --- the interval and its outcome ----------------------------------------------------------


def test_the_t_quantiles_match_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 30, 31, 60, 200):
        assert t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=2e-4)


def test_the_interval_is_the_mean_difference_plus_minus_t_times_the_standard_error():
    result = paired({0: 80.0, 1: 84.0, 2: 82.0}, {0: 70.0, 1: 71.0, 2: 75.0}, margin=1.0)
    diffs = [10.0, 13.0, 7.0]
    half = 4.303 * statistics.stdev(diffs) / math.sqrt(3)
    assert result.mean == pytest.approx(10.0)
    assert result.interval == pytest.approx((10.0 - half, 10.0 + half))


def test_an_interval_above_the_margin_is_higher_and_below_minus_the_margin_is_lower():
    a, b = {0: 80.0, 1: 81.0, 2: 82.5}, {0: 70.0, 1: 71.5, 2: 72.0}
    assert paired(a, b, margin=1.0).outcome == HIGHER
    assert paired(b, a, margin=1.0).outcome == LOWER


def test_an_interval_straddling_the_margin_is_undecided():
    # Mean +3 points, but the seeds disagree: the interval reaches below +1.
    result = paired({0: 80.0, 1: 76.0, 2: 82.0}, {0: 75.0, 1: 78.0, 2: 76.0}, margin=1.0)
    low, high = result.interval
    assert low < 1.0 < high
    assert result.outcome == UNDECIDED
    assert "95% CI [" in result.text()


def test_an_interval_inside_the_margin_is_equivalent():
    result = paired({0: 80.0, 1: 81.0, 2: 82.0}, {0: 80.1, 1: 80.9, 2: 82.1}, margin=1.0)
    assert result.outcome == EQUIVALENT


def test_fewer_than_three_paired_seeds_decide_nothing_however_large_the_difference():
    assert MIN_SEEDS == 3
    result = paired({0: 95.0, 1: 96.0}, {0: 10.0, 1: 11.0}, margin=1.0)
    assert result.outcome == UNDECIDED
    assert "fewer than 3 paired seeds" in result.text()


def test_only_seeds_both_arms_ran_are_paired():
    result = paired({0: 90.0, 1: 91.0, 2: 92.0}, {1: 80.0, 2: 81.0, 3: 82.0}, margin=1.0)
    assert result.seeds == (1, 2)
    assert result.outcome == UNDECIDED


def test_pairing_by_seed_cancels_the_spread_the_arms_share():
    # Seeds move both arms together by up to 20 points; the difference is always ~3.
    shared = [0.0, 10.0, 20.0, 5.0, 15.0]
    a = {s: 70.0 + shared[s] + 3.0 + 0.1 * s for s in range(5)}
    b = {s: 70.0 + shared[s] for s in range(5)}
    matched = paired(a, b, margin=1.0)
    # The same numbers with the seeds of one arm shuffled: the pairing is lost.
    order = [2, 4, 0, 1, 3]
    shuffled = paired(a, {s: b[order[s]] for s in range(5)}, margin=1.0)
    width = matched.interval[1] - matched.interval[0]
    assert width < 1.0
    assert shuffled.interval[1] - shuffled.interval[0] > 10 * width
    assert matched.outcome == HIGHER
    assert shuffled.outcome == UNDECIDED


def test_a_claim_holds_only_if_every_comparison_supports_it():
    assert combine([HIGHER, HIGHER]) == HOLDS
    assert combine([HIGHER, UNDECIDED]) == UNDECIDED_VERDICT
    assert combine([HIGHER, LOWER]) == NOT_HOLD
    assert combine([HIGHER, EQUIVALENT]) == NOT_HOLD
    assert combine([]) == UNTESTED


# --- claim 1: TVLARS above WA-LARS ---------------------------------------------------------


def test_tvlars_clearly_above_wa_lars_at_every_batch_size_holds():
    runs = []
    for batch, lr in ((1024, 4.0), (16384, 19.0)):
        runs += arm_runs("WA-LARS", batch, lr, (70.0, 75.0, 72.0))
        runs += arm_runs("TVLARS", batch, lr, (80.0, 84.5, 82.5))
    assert claim_tvlars_beats_lars(runs).verdict == HOLDS


def test_tvlars_clearly_below_wa_lars_at_one_batch_size_does_not_hold():
    runs = arm_runs("WA-LARS", 1024, 4.0, (70.0, 75.0, 72.0))
    runs += arm_runs("TVLARS", 1024, 4.0, (80.0, 84.5, 82.5))
    runs += arm_runs("WA-LARS", 16384, 19.0, (80.0, 84.5, 82.5))
    runs += arm_runs("TVLARS", 16384, 19.0, (70.0, 75.0, 72.0))
    assert claim_tvlars_beats_lars(runs).verdict == NOT_HOLD


def test_tvlars_equal_to_wa_lars_does_not_hold():
    runs = arm_runs("WA-LARS", 1024, 4.0, (70.0, 75.0, 72.0))
    runs += arm_runs("TVLARS", 1024, 4.0, (70.2, 74.9, 72.1))
    assert claim_tvlars_beats_lars(runs).verdict == NOT_HOLD


def test_tvlars_above_on_average_but_not_in_every_seed_is_undecided_with_its_interval():
    runs = arm_runs("WA-LARS", 1024, 4.0, (75.0, 78.0, 76.0))
    runs += arm_runs("TVLARS", 1024, 4.0, (80.0, 76.0, 82.0))
    claim = claim_tvlars_beats_lars(runs)
    assert claim.verdict == UNDECIDED_VERDICT
    assert any("95% CI [" in line for line in claim.evidence)


def test_one_seed_per_arm_decides_nothing():
    runs = [make_run("WA-LARS", 1024, 4.0, 0, 60.0), make_run("TVLARS", 1024, 4.0, 0, 90.0)]
    assert claim_tvlars_beats_lars(runs).verdict == UNDECIDED_VERDICT


def test_only_batch_sizes_with_three_paired_seeds_decide():
    runs = arm_runs("WA-LARS", 16384, 19.0, (70.0, 75.0, 72.0))
    runs += arm_runs("TVLARS", 16384, 19.0, (80.0, 84.5, 82.5))
    # One seed at B=1024, TVLARS far below: an indication, not a verdict.
    runs += [make_run("WA-LARS", 1024, 4.0, 0, 90.0), make_run("TVLARS", 1024, 4.0, 0, 50.0)]
    claim = claim_tvlars_beats_lars(runs)
    assert claim.verdict == HOLDS
    assert any("indications" in line for line in claim.evidence)


def test_a_diverged_arm_counts_with_the_accuracy_it_stopped_at():
    runs = arm_runs("WA-LARS", 16384, 19.0, (9.8, 10.1, 9.9), diverged=True)
    runs += arm_runs("TVLARS", 16384, 19.0, (80.0, 84.5, 82.5))
    claim = claim_tvlars_beats_lars(runs)
    assert claim.verdict == HOLDS
    assert any("diverged: 0 vs 3" in line for line in claim.evidence)


def test_a_diverged_run_without_an_accuracy_leaves_its_seed_unpaired():
    runs = arm_runs("WA-LARS", 16384, 19.0, (70.0, 75.0, math.nan))
    runs[-1].diverged = True
    runs += arm_runs("TVLARS", 16384, 19.0, (80.0, 84.5, 82.5))
    assert claim_tvlars_beats_lars(runs).verdict == UNDECIDED_VERDICT


# --- claim 2: LAMB weak, judged for both LAMBs ---------------------------------------------


def lamb_runs(lamb_accuracies, lamb_eta_accuracies, lrs=(15.0, 17.0, 19.0)):
    runs = []
    for lr, lamb, eta in zip(lrs, lamb_accuracies, lamb_eta_accuracies, strict=True):
        runs += arm_runs("WA-LARS", 16384, lr, (80.0, 82.0, 81.0))
        runs += arm_runs("WA-LAMB", 16384, lr, (lamb, lamb + 2.0, lamb + 1.2))
        runs += arm_runs(
            "WA-LAMB·η", 16384, lr, (eta, eta + 2.2, eta + 0.8), optimizer_lr=lr * 1e-3
        )
    return runs


def test_lamb_far_below_at_small_lrs_and_close_at_the_largest_holds():
    claim = claim_lamb_weak(lamb_runs((20.0, 45.0, 80.0), (20.0, 45.0, 80.0)))
    assert claim.by_arm == {"WA-LAMB": HOLDS, "WA-LAMB·η": HOLDS}


def test_lamb_below_at_every_lr_holds_only_in_part():
    claim = claim_lamb_weak(lamb_runs((10.0, 10.0, 10.0), (10.0, 10.0, 10.0)))
    assert claim.by_arm["WA-LAMB"] == PART
    assert any("weak at every LR" in line for line in claim.evidence)


def test_lamb_is_judged_at_the_largest_batch_size_it_ran():
    # Level with WA-LARS at 1024 (where the paper has LAMB close too); at 16384 far below
    # at the smallest LR and level at the largest: the claim's pattern, so it holds.
    runs = lamb_runs((20.0, 45.0, 80.0), (20.0, 45.0, 80.0))
    for lr in (2.0, 4.0):
        runs += arm_runs("WA-LARS", 1024, lr, (80.0, 82.0, 81.0))
        runs += arm_runs("WA-LAMB", 1024, lr, (80.0, 82.0, 81.0))
    claim = claim_lamb_weak(runs)
    assert claim.by_arm["WA-LAMB"] == HOLDS
    assert any("at B=16384 below WA-LARS at the smallest LR" in line for line in claim.evidence)


def test_an_evidence_line_marks_diverged_runs_only_when_some_diverged():
    runs = arm_runs("TVLARS", 1024, 4.0, (85.0, 86.0, 87.0))
    runs += arm_runs("WA-LARS", 1024, 4.0, (80.0, 81.0, 82.0))
    (line,) = [e for e in claim_tvlars_beats_lars(runs).evidence if "B=1024" in e]
    assert "diverged" not in line
    runs[0] = make_run("TVLARS", 1024, 4.0, 0, 85.0, diverged=True)
    (line,) = [e for e in claim_tvlars_beats_lars(runs).evidence if "B=1024" in e]
    assert "(diverged: 1 vs 0);" in line


def test_deciding_says_which_comparisons_decide():
    def comparison(where, seeds):
        result = paired({s: 1.0 + s for s in range(seeds)}, {s: 0.0 for s in range(seeds)}, 1.0)
        return Comparison(where, result, 1024)

    three, one, other_three = comparison("a", 3), comparison("b", 1), comparison("c", 3)
    assert deciding([]) == ([], "")
    assert deciding([one]) == ([one], "no comparison has 3 paired seeds: nothing is decided")
    assert deciding([three, one, other_three]) == (
        [three, other_three],
        "decided by the settings with 3+ paired seeds (a; c); the others are indications",
    )
    assert deciding([three, other_three]) == (
        [three, other_three],
        "decided by 2 setting(s), each with 3+ paired seeds",
    )


def test_the_margin_note_names_the_margin_in_its_unit():
    start = "a comparison decides only when the 95% Student t interval of the per-seed "
    assert _margin_note(1.0) == start + "differences clears ±1 point"
    assert _margin_note(0.5) == start + "differences clears ±0.5 points"
    assert _margin_note(1.5, "epochs") == start + "differences clears ±1.5 epochs"


def test_lamb_level_with_lars_at_the_smallest_lr_does_not_hold():
    claim = claim_lamb_weak(lamb_runs((80.0, 80.0, 80.0), (80.0, 80.0, 80.0)))
    assert claim.by_arm["WA-LAMB·η"] == NOT_HOLD


def test_the_two_lambs_get_separate_verdicts_and_the_difference_is_explained():
    claim = claim_lamb_weak(lamb_runs((10.0, 12.0, 15.0), (88.0, 89.0, 90.0)))
    assert claim.by_arm == {"WA-LAMB": PART, "WA-LAMB·η": NOT_HOLD}
    assert claim.verdict == "holds in part for WA-LAMB; does not hold for WA-LAMB·η"
    assert any("lr x eta" in caveat for caveat in claim.caveats)
    assert any("its optimizer LRs: 0.015, 0.017, 0.019" in line for line in claim.evidence)


def test_lamb_below_at_its_only_lr_holds_in_part():
    claim = claim_lamb_weak(lamb_runs((10.0,), (50.0,), lrs=(19.0,)))
    assert claim.by_arm == {"WA-LAMB": PART, "WA-LAMB·η": PART}


def test_lamb_below_at_its_only_lr_says_the_lr_pattern_is_not_tested():
    claim = claim_lamb_weak(lamb_runs((10.0,), (50.0,), lrs=(19.0,)))
    assert claim.evidence[-1] == (
        "  - below WA-LARS at B=16384; one LR only, so the small-LR-versus-large-LR pattern "
        "is not tested: holds in part"
    )


def test_the_fair_lamb_alone_is_judged_without_the_authors_lamb():
    runs = [r for r in lamb_runs((20.0, 45.0, 80.0), (20.0, 45.0, 80.0)) if r.method != "WA-LAMB"]
    assert claim_lamb_weak(runs).by_arm == {"WA-LAMB·η": HOLDS}


def test_lamb_far_below_at_the_smallest_lr_and_undecided_at_the_largest_says_so():
    runs = []
    for lr in (15.0, 17.0, 19.0):
        runs += arm_runs("WA-LARS", 16384, lr, (80.0, 82.0, 81.0))
    runs += arm_runs("WA-LAMB", 16384, 15.0, (20.0, 22.0, 21.2))
    runs += arm_runs("WA-LAMB", 16384, 17.0, (45.0, 47.0, 46.2))
    # Differences -2, +1, -1 at lr 19: the interval straddles the margin.
    runs += arm_runs("WA-LAMB", 16384, 19.0, (78.0, 83.0, 80.0))
    claim = claim_lamb_weak(runs)
    assert claim.by_arm == {"WA-LAMB": PART}
    assert claim.evidence[-1] == (
        "  - at B=16384 below WA-LARS at the smallest LR, and undecided at the largest: "
        "holds in part"
    )


# --- claim 3: NOWA-LARS unstable -----------------------------------------------------------


def jagged(accuracy, swing):
    return [accuracy + (swing if e % 2 else -swing) for e in range(EPOCHS)]


def test_nowa_lars_swinging_more_than_wa_lars_in_every_seed_holds():
    runs = arm_runs("WA-LARS", 4096, 10.0, (90.0, 91.0, 92.0))
    runs += [make_run("NOWA-LARS", 4096, 10.0, s, 85.0, curve=jagged(85.0, 4.0 + s)) for s in SEEDS]
    assert claim_nowa_unstable(runs).verdict == HOLDS


def test_nowa_lars_as_smooth_as_wa_lars_does_not_hold():
    runs = arm_runs("WA-LARS", 4096, 10.0, (90.0, 91.0, 92.0))
    runs += arm_runs("NOWA-LARS", 4096, 10.0, (88.0, 89.0, 90.0))
    assert claim_nowa_unstable(runs).verdict == NOT_HOLD


def test_nowa_lars_diverging_in_every_seed_where_wa_lars_does_not_holds():
    runs = arm_runs("WA-LARS", 16384, 19.0, (80.0, 81.0, 82.0))
    runs += arm_runs("NOWA-LARS", 16384, 19.0, (10.0, 10.0, 10.0), diverged=True)
    assert claim_nowa_unstable(runs).verdict == HOLDS


def test_wa_lars_diverging_where_nowa_lars_does_not_contradicts_the_claim():
    runs = arm_runs("WA-LARS", 16384, 19.0, (10.0, 10.0, 10.0), diverged=True)
    runs += arm_runs("NOWA-LARS", 16384, 19.0, (80.0, 81.0, 82.0))
    assert claim_nowa_unstable(runs).verdict == NOT_HOLD


def test_wa_lars_swinging_more_than_nowa_lars_contradicts_the_claim_and_says_so():
    runs = arm_runs("NOWA-LARS", 4096, 10.0, (90.0, 91.0, 92.0))
    runs += [make_run("WA-LARS", 4096, 10.0, s, 85.0, curve=jagged(85.0, 4.0 + s)) for s in SEEDS]
    claim = claim_nowa_unstable(runs)
    assert claim.verdict == NOT_HOLD
    assert any(
        line.startswith("B=4096, lr 10: ") and line.endswith("NOWA-LARS more stable")
        for line in claim.evidence
    )


def test_nowa_lars_swinging_more_says_it_is_less_stable():
    runs = arm_runs("WA-LARS", 4096, 10.0, (90.0, 91.0, 92.0))
    runs += [make_run("NOWA-LARS", 4096, 10.0, s, 85.0, curve=jagged(85.0, 4.0 + s)) for s in SEEDS]
    evidence = claim_nowa_unstable(runs).evidence
    assert any(line.endswith("NOWA-LARS less stable") for line in evidence)


def test_instability_is_judged_at_every_batch_both_arms_ran_and_on_their_common_seeds():
    # Batch 1024 has no NOWA-LARS arm; at 4096 NOWA-LARS has a seed WA-LARS lacks.
    runs = arm_runs("WA-LARS", 1024, 4.0, (90.0, 91.0, 92.0))
    runs += arm_runs("WA-LARS", 4096, 10.0, (90.0, 91.0, 92.0))
    runs += [
        make_run("NOWA-LARS", 4096, 10.0, s, 85.0, curve=jagged(85.0, 4.0 + s)) for s in (*SEEDS, 3)
    ]
    assert claim_nowa_unstable(runs).verdict == HOLDS


def test_a_seed_where_both_arms_diverged_counts_as_no_difference():
    runs = arm_runs("NOWA-LARS", 16384, 19.0, (10.0, 10.0, 10.0), diverged=True)
    runs += [make_run("WA-LARS", 16384, 19.0, 0, 10.0, diverged=True)]
    runs += [make_run("WA-LARS", 16384, 19.0, s, 80.0) for s in (1, 2)]
    claim = claim_nowa_unstable(runs)
    line = next(line for line in claim.evidence if line.startswith("B=16384"))
    assert "diverged 3/3 vs 1/3" in line
    # Differences (0, +P, +P): their mean is two thirds of the penalty.
    assert f"+{2 * DIVERGENCE_PENALTY / 3:.1f} points" in line


# --- claim 4: TVLARS converges faster ------------------------------------------------------


def rising(accuracy, epochs_to_top):
    return [accuracy * min(1.0, (e + 1) / epochs_to_top) for e in range(EPOCHS)]


def convergence_runs(tv_epochs, wa_epochs, tv_acc=85.0, wa_acc=80.0):
    runs = []
    for s in SEEDS:
        runs.append(
            make_run("TVLARS", 16384, 19.0, s, tv_acc + s, curve=rising(tv_acc + s, tv_epochs[s]))
        )
        runs.append(
            make_run("WA-LARS", 16384, 19.0, s, wa_acc + s, curve=rising(wa_acc + s, wa_epochs[s]))
        )
    return runs


def test_epochs_to_converge_reads_the_crossing_of_95_percent_of_the_best_off_the_curve():
    run = make_run("TVLARS", 16384, 19.0, 0, 100.0, curve=[10.0, 50.0, 90.0, 100.0, 100.0])
    assert run.epochs_to_converge() == pytest.approx(3.5)
    assert make_run("TVLARS", 16384, 19.0, 0, 100.0, curve=[99.0] * 5).epochs_to_converge() == 1


def test_tvlars_reaching_its_best_epochs_sooner_holds():
    assert claim_tvlars_converges_faster(convergence_runs((2, 3, 2), (8, 9, 8))).verdict == HOLDS


def test_tvlars_reaching_its_best_later_does_not_hold():
    claim = claim_tvlars_converges_faster(convergence_runs((8, 9, 8), (2, 3, 2)))
    assert claim.verdict == NOT_HOLD


def test_tvlars_reaching_its_best_at_the_same_epoch_is_undecided():
    claim = claim_tvlars_converges_faster(convergence_runs((5, 6, 5), (5, 6, 5)))
    assert claim.verdict == UNDECIDED_VERDICT


def test_the_convergence_margin_is_a_tenth_of_the_run_and_at_least_one_epoch():
    assert epoch_margin([make_run("TVLARS", 16384, 19.0, 0, 80.0)]) == 1.0
    long_run = make_run("TVLARS", 16384, 19.0, 0, 80.0)
    long_run.epochs = 100
    assert epoch_margin([long_run]) == 10.0


def test_reaching_a_much_worse_best_sooner_is_not_converging_faster():
    runs = convergence_runs((2, 3, 2), (8, 9, 8), tv_acc=20.0, wa_acc=80.0)
    assert claim_tvlars_converges_faster(runs).verdict == UNDECIDED_VERDICT


# --- claim 5: lambda by batch size ---------------------------------------------------------


def lambda_runs(small_batch_acc, large_batch_acc, lambdas=(1e-5, 1e-3)):
    runs = []
    for batch, lr, accs in ((1024, 4.0, small_batch_acc), (16384, 19.0, large_batch_acc)):
        for lmbda, acc in zip(lambdas, accs, strict=True):
            runs += arm_runs("TVLARS", batch, lr, (acc, acc + 1.4, acc + 0.6), lmbda=lmbda)
    return runs


def test_small_lambda_best_at_1k_and_large_lambda_best_at_16k_holds():
    assert claim_lambda_by_batch(lambda_runs((85.0, 75.0), (70.0, 80.0))).verdict == HOLDS


def test_large_lambda_best_at_1k_does_not_hold():
    assert claim_lambda_by_batch(lambda_runs((75.0, 85.0), (70.0, 80.0))).verdict == NOT_HOLD


def test_small_lambda_best_at_16k_does_not_hold():
    assert claim_lambda_by_batch(lambda_runs((85.0, 75.0), (80.0, 70.0))).verdict == NOT_HOLD


def test_of_two_lrs_at_the_largest_batch_the_one_with_more_lambdas_is_judged():
    # At 16384, LR 19 has both lambdas (the large one best), LR 21 only one of them and a
    # third lambda, worst: judging LR 21 would compare 1e-5 with 1e-4 instead.
    runs = lambda_runs((85.0, 75.0), (70.0, 80.0))
    runs += arm_runs("TVLARS", 16384, 21.0, (90.0, 91.0, 90.5), lmbda=1e-5)
    runs += arm_runs("TVLARS", 16384, 21.0, (60.0, 61.0, 60.5), lmbda=1e-4)
    runs += arm_runs("TVLARS", 16384, 19.0, (75.0, 76.0, 75.5), lmbda=1e-4)
    claim = claim_lambda_by_batch(runs)
    assert claim.verdict == HOLDS
    assert "  - B=16384: λ=0.001 vs λ=1e-05: +10.0 points" in "\n".join(claim.evidence)


def test_failed_runs_are_left_out_of_every_claim():
    runs = arm_runs("TVLARS", 1024, 4.0, (90.0, 91.0, 92.0))
    runs += arm_runs("WA-LARS", 1024, 4.0, (85.0, 86.0, 87.0))
    failed = make_run("TVLARS", 1024, 4.0, 3, 10.0)
    failed.state = "failed"
    claim = claim_tvlars_beats_lars([*runs, failed])
    assert claim.evidence == claim_tvlars_beats_lars(runs).evidence


def test_lambdas_at_one_batch_size_only_hold_in_part():
    runs = [r for r in lambda_runs((85.0, 75.0), (70.0, 80.0)) if r.batch_size == 1024]
    claim = claim_lambda_by_batch(runs)
    assert claim.verdict == PART
    assert "only one batch size has several lambdas: half the claim is tested" in claim.caveats


# --- claim 6: init hardly matters ----------------------------------------------------------


def init_runs(kaiming_offset):
    runs = arm_runs("WA-LARS", 16384, 19.0, (80.0, 84.0, 82.0))
    runs += arm_runs(
        "WA-LARS",
        16384,
        19.0,
        (80.0 + kaiming_offset, 84.3 + kaiming_offset, 81.8 + kaiming_offset),
        init="kaiming_normal",
    )
    return runs


def test_inits_agreeing_within_the_margin_hold():
    assert claim_init_irrelevant(init_runs(0.0)).verdict == HOLDS


def test_an_init_clearly_worse_does_not_hold():
    assert claim_init_irrelevant(init_runs(-10.0)).verdict == NOT_HOLD


def test_an_init_clearly_better_does_not_hold_either():
    assert claim_init_irrelevant(init_runs(+10.0)).verdict == NOT_HOLD


def test_inits_with_a_wide_interval_are_undecided():
    runs = arm_runs("WA-LARS", 16384, 19.0, (80.0, 84.0, 82.0))
    runs += arm_runs("WA-LARS", 16384, 19.0, (84.0, 80.0, 83.0), init="kaiming_normal")
    assert claim_init_irrelevant(runs).verdict == UNDECIDED_VERDICT


# --- claim 7: higher LR better -------------------------------------------------------------


def lr_runs(low_acc, high_acc):
    return arm_runs("TVLARS", 16384, 15.0, low_acc) + arm_runs("TVLARS", 16384, 19.0, high_acc)


def test_the_higher_lr_clearly_more_accurate_holds():
    assert claim_higher_lr_better(lr_runs((70.0, 72.0, 71.0), (80.0, 83.0, 81.0))).verdict == HOLDS


def test_the_higher_lr_clearly_less_accurate_does_not_hold():
    claim = claim_higher_lr_better(lr_runs((80.0, 83.0, 81.0), (70.0, 72.0, 71.0)))
    assert claim.verdict == NOT_HOLD


def test_higher_lr_is_judged_in_every_group_with_two_lrs_and_says_which_lrs():
    # Batch 4096 ran one LR only (nothing to compare); batch 16384 ran two.
    runs = arm_runs("TVLARS", 4096, 10.0, (80.0, 81.0, 82.0))
    runs += lr_runs((70.0, 72.0, 71.0), (80.0, 83.0, 81.0))
    claim = claim_higher_lr_better(runs)
    assert claim.verdict == HOLDS
    (line,) = [line for line in claim.evidence if "vs lr" in line]
    assert line.startswith("TVLARS λ=0.0001, B=16384: lr 19 ")
    assert " vs lr 15 " in line and line.endswith("→ lr 19 higher")
    assert "decided by 1 setting(s), each with 3+ paired seeds" in claim.evidence


# --- Barlow Twins ----------------------------------------------------------------------------


def barlow_twins_run(method, seed, probe, random_probe):
    run = make_run(method, 4096, 10.0, seed, probe, lmbda=1e-5)
    run.task = "barlow-twins"
    run.random_acc = random_probe
    # Pre-training logs its loss per epoch, no test accuracy.
    run.metrics = [{"epoch": e + 1, "train_loss": 10.0 - e} for e in range(EPOCHS)]
    return run


def test_the_report_overview_counts_barlow_twins_epochs_as_pre_training_epochs():
    from tvlars.experiments.report import _overview

    runs = [make_run("WA-LARS", 4096, 10.0, 0, 90.0), barlow_twins_run("WA-LARS", 0, 60.0, 55.0)]
    runs[1].epochs = 3
    (line,) = [line for line in _overview(runs, {}) if line.startswith("Datasets")]
    assert line == (
        f"Datasets and epochs: barlow-twins / mnist1d (3 pre-training epochs), "
        f"mnist1d ({runs[0].epochs} epochs)."
    )


def test_claim_one_compares_barlow_twins_arms_apart_from_classification():
    runs = [barlow_twins_run("WA-LARS", s, 60.0 + s, 55.0) for s in SEEDS]
    runs += [barlow_twins_run("TVLARS", s, 68.0 + s, 55.0) for s in SEEDS]
    claim = claim_tvlars_beats_lars(runs)
    assert claim.verdict == HOLDS
    assert any("barlow-twins / mnist1d" in line for line in claim.evidence)
    assert math.isnan(runs[0].epochs_to_converge()) and math.isnan(runs[0].instability())


def test_a_barlow_twins_cell_shows_the_random_backbone_probe_beside_its_own():
    runs = [barlow_twins_run("WA-LARS", s, 60.0 + s, 55.0 + s) for s in SEEDS]
    (group,) = group_runs(runs)
    assert cell_text(group, with_paper=False) == "61.0 ± 1.0 (n=3) (random backbone 56.0 ± 1.0)"


# --- runs of other settings ----------------------------------------------------------------


def test_runs_of_another_setting_are_never_paired_with_the_folders_others():
    # epochs=2 runs: TVLARS far ahead; epochs=1 runs: WA-LARS alone. Pairing across the
    # two settings would compare TVLARS (2 epochs) with WA-LARS (1 epoch).
    runs = arm_runs("TVLARS", 1024, 4.0, (80.0, 84.5, 82.5))
    runs += arm_runs("WA-LARS", 1024, 4.0, (60.0, 61.0, 62.0))
    for run in runs:
        run.setting_note = "epochs=2" if run.method == "TVLARS" else "epochs=1"
    assert claim_tvlars_beats_lars(runs).verdict == UNTESTED


def test_results_do_not_depend_on_the_order_of_the_runs():
    runs = lamb_runs((10.0, 12.0, 15.0), (88.0, 89.0, 90.0))
    shuffled = list(runs)
    random.Random(0).shuffle(shuffled)
    assert claim_lamb_weak(shuffled).verdict == claim_lamb_weak(runs).verdict


# --- what the report prints of a comparison --------------------------------------------------


def test_the_t_quantiles_beyond_the_table_match_published_values():
    # Two-sided 95% quantiles of Student's t, as printed in standard tables (3 decimals).
    published = {31: 2.040, 40: 2.021, 50: 2.009, 60: 2.000, 80: 1.990, 100: 1.984, 120: 1.980}
    for df, value in published.items():
        assert t_quantile_975(df) == pytest.approx(value, abs=6e-4), df
    assert t_quantile_975(0) == math.inf
    assert (t_quantile_975(1), t_quantile_975(30)) == (12.706, 2.042)


def test_a_comparison_prints_its_mean_interval_and_seed_count():
    three = paired({0: 3.0, 1: 5.0, 2: 7.0}, {0: 1.0, 1: 1.0, 2: 1.0}, margin=1.0)
    # mean 4, sd 2, half width 4.303 * 2 / sqrt(3) = 4.97
    assert three.text() == "+4.0 points, 95% CI [-1.0, +9.0] (3 paired seeds)"
    assert three.text("epochs").startswith("+4.0 epochs, ")


def test_a_comparison_of_too_few_seeds_says_so():
    two = paired({0: 2.0, 1: 4.0}, {0: 1.0, 1: 1.0}, margin=1.0)
    assert two.text() == (
        "+2.0 points, 95% CI [-10.7, +14.7] (2 paired seeds): fewer than 3 paired seeds"
    )
    one = paired({0: 2.0}, {0: 1.0}, margin=1.0)
    assert one.text() == (
        "+1.0 points, 95% CI (no interval from 1 seed) (1 paired seed): fewer than 3 paired seeds"
    )
    assert paired({0: 2.0}, {1: 1.0}, margin=1.0).text() == "no seed ran in both arms"


def test_a_cell_prints_its_mean_spread_and_count():
    assert stat([1.0, 2.0, 3.0]).text() == "2.0 ± 1.0"
    assert stat([1.0, 2.0, 3.0]).text_n() == "2.0 ± 1.0 (n=3)"
    assert stat([1.25]).text(2) == "1.25"
    assert stat([1.25]).text_n() == "1.2 (n=1)"
    assert stat([math.nan]).text() == stat([]).text_n() == "—"
