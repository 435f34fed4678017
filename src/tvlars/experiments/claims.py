"""The paper's claims, each checked against a sweep's runs: evidence and a plain verdict.

Every comparison pairs two arms by seed (seed k: the same initial weights and data order
in both) and decides from the 95% interval of the per-seed differences against a margin
(:mod:`tvlars.experiments.stats`): higher, lower, equivalent (inside ±margin) or
undecided. Only comparisons with at least :data:`~tvlars.experiments.stats.MIN_SEEDS`
paired seeds decide; others are listed as indications. A claim's verdict:

- "holds": every deciding comparison supports it;
- "does not hold": at least one deciding comparison contradicts it;
- "undecided": the rest (an interval straddles the margin, or too few seeds), with the
  intervals in the evidence;
- "holds in part": a claim of two parts where one holds and the other is untested here
  or contradicted in a way the claim's text names (see each claim);
- "not tested by this sweep": the sweep lacks the cells.

Accuracies are final test accuracies in points; a diverged run counts with the accuracy it
had when it stopped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tvlars.experiments.records import Run, main_init
from tvlars.experiments.stats import (
    ACCURACY_MARGIN,
    EQUIVALENT,
    HIGHER,
    LOWER,
    MIN_SEEDS,
    UNDECIDED,
    Paired,
    by_seed,
    paired,
    stat,
)

HOLDS = "holds"
PART = "holds in part"
NOT_HOLD = "does not hold"
UNDECIDED_VERDICT = "undecided"
UNTESTED = "not tested by this sweep"
#: Claim 4: one arm must reach 95% of its best sooner by this share of the run's epochs (at
#: least one epoch): the paper's gap is 40-60% of its 100 epochs, and a 12-epoch run's
#: curves differ by fractions of an epoch from one thread count to another.
EPOCH_MARGIN_SHARE = 0.1
#: Points of epoch-to-epoch test-accuracy change that make one arm less stable (claim 3).
INSTABILITY_MARGIN = 0.5
#: Points within which accuracies count as "hardly changed" (claim 6).
INIT_MARGIN = 2.0
#: The two LAMB arms claim 2 judges, and what each one is.
LAMB_ARMS = {
    "WA-LAMB": "the authors' LAMB arithmetic at the paper's LRs (Table I's LAMB)",
    "WA-LAMB·η": "the standard LAMB at the LR x eta (1e-3): the fair baseline",
}


@dataclass
class Claim:
    title: str
    paper: str
    verdict: str = UNTESTED
    evidence: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    #: Claim 2: the verdict for each LAMB arm.
    by_arm: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """One paired comparison in one setting (``where``: e.g. ``B=4096, lr 10``)."""

    where: str
    result: Paired
    batch: int = 0
    #: An outcome the claim sets instead of the interval's (see claim 4).
    forced: str | None = None

    @property
    def outcome(self) -> str:
        return self.forced or self.result.outcome


def combine(outcomes: list[str], support: str = HIGHER, against=(LOWER, EQUIVALENT)) -> str:
    """A claim's verdict from its deciding comparisons: holds if all support it, does not
    hold if any is ``against`` it, else undecided."""
    if not outcomes:
        return UNTESTED
    if all(o == support for o in outcomes):
        return HOLDS
    if any(o in against for o in outcomes):
        return NOT_HOLD
    return UNDECIDED_VERDICT


def deciding(comparisons: list[Comparison]) -> tuple[list[Comparison], str]:
    """The comparisons with enough paired seeds to decide (all of them, if none has), and
    a note saying which count."""
    seeded = [c for c in comparisons if c.result.n >= MIN_SEEDS]
    if not seeded:
        return comparisons, (
            f"no comparison has {MIN_SEEDS} paired seeds: nothing is decided" if comparisons else ""
        )
    if len(seeded) < len(comparisons):
        return seeded, (
            f"decided by the settings with {MIN_SEEDS}+ paired seeds ("
            + "; ".join(c.where for c in seeded)
            + "); the others are indications"
        )
    return seeded, f"decided by {len(seeded)} setting(s), each with {MIN_SEEDS}+ paired seeds"


def arm(run: Run) -> str:
    """The method and, for TVLARS-type methods, how lambda is set."""
    return f"{run.method} {run.lambda_label}" if run.uses_lambda else run.method


def setting(run: Run) -> str:
    """The dataset (and the task, if not classification) and any setting in which the run
    differs from the folder's others (``epochs=1``): runs of different settings are never
    compared or paired."""
    text = run.dataset if run.task == "classification" else f"{run.task} / {run.dataset}"
    return f"{text} [{run.setting_note}]" if run.setting_note else text


def _done(runs: list[Run], tasks: tuple[str, ...] = ("classification",)) -> list[Run]:
    return [r for r in runs if r.state in ("finished", "diverged") and r.task in tasks]


def cells_by_context(
    runs: list[Run], tasks: tuple[str, ...] = ("classification",)
) -> dict[tuple, dict[str, list[Run]]]:
    """{(setting, batch, grid lr, excluded scale, init): {arm: runs over seeds}}."""
    table: dict[tuple, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in _done(runs, tasks):
        key = (setting(run), run.batch_size, run.lr, run.excluded_lr_scale, run.init)
        table[key][arm(run)].append(run)
    return table


def accuracies(runs: list[Run]) -> dict[int, float]:
    return by_seed((r.seed, r.final_acc) for r in runs)


def compare_accuracy(where: str, a: list[Run], b: list[Run], batch: int) -> Comparison:
    return Comparison(where, paired(accuracies(a), accuracies(b), ACCURACY_MARGIN), batch)


def _line(c: Comparison, a_name: str, a: list[Run], b_name: str, b: list[Run]) -> str:
    acc_a = stat(r.final_acc for r in a)
    acc_b = stat(r.final_acc for r in b)
    diverged = sum(r.diverged for r in a), sum(r.diverged for r in b)
    marks = f" (diverged: {diverged[0]} vs {diverged[1]})" if any(diverged) else ""
    return (
        f"{c.where}: {a_name} {acc_a.text_n()} vs {b_name} {acc_b.text_n()}{marks}; "
        f"paired difference {c.result.text()} → {a_name} {c.outcome}"
    )


def _margin_note(margin: float, unit: str = "points") -> str:
    return (
        f"a comparison decides only when the 95% Student t interval of the per-seed "
        f"differences clears ±{margin:g} {unit if margin != 1 else unit.rstrip('s')}"
    )


def claim_tvlars_beats_lars(runs: list[Run]) -> Claim:
    claim = Claim(
        "TVLARS is more accurate than WA-LARS at every batch size",
        "Table I: TVLARS above LARS (with warm-up) in every block, by 1-7 points "
        "(classification and Barlow Twins).",
    )
    table = cells_by_context(runs, ("classification", "barlow-twins"))
    init = main_init(_done(runs, ("classification", "barlow-twins")))
    # One series per (TVLARS arm, excluded scale, init): across batch sizes, at the highest
    # LR both methods ran at.
    series: dict[tuple, dict[int, tuple[float, list[Run], list[Run]]]] = defaultdict(dict)
    for (dataset, batch, lr, scale, cell_init), arms in table.items():
        if "WA-LARS" not in arms:
            continue
        for name, members in arms.items():
            if not name.startswith("TVLARS"):
                continue
            key = (dataset, name, scale, cell_init)
            if batch not in series[key] or lr > series[key][batch][0]:
                series[key][batch] = (lr, members, arms["WA-LARS"])
    if not series:
        return claim
    verdicts = {}
    for key in sorted(series, key=lambda k: ("barlow-twins" in k[0], k[2] != 1.0, k[3] != init, k)):
        dataset, name, scale, cell_init = key
        label = f"{dataset}, excluded LR x{scale:g}" + (
            "" if cell_init == init else f", {cell_init}"
        )
        claim.evidence.append(f"**{name}, {label}:**")
        comparisons = []
        for batch, (lr, tv, lars) in sorted(series[key].items()):
            c = compare_accuracy(f"B={batch}, lr {lr:g}", tv, lars, batch)
            comparisons.append(c)
            claim.evidence.append("  - " + _line(c, "TVLARS", tv, "WA-LARS", lars))
        used, note = deciding(comparisons)
        verdicts[key] = combine([c.outcome for c in used])
        claim.evidence.append(f"  - {note}: {verdicts[key]}")
    # The headline: the paper's own setting (literal lambda, excluded LR x1, the table's
    # init), covering the most batch sizes; the other settings are listed as evidence.
    primary = sorted(
        series,
        key=lambda k: (
            "barlow-twins" in k[0],
            "paper shape" in k[1],
            k[2] != 1.0,
            k[3] != init,
            -len(series[k]),
        ),
    )[0]
    claim.verdict = verdicts[primary]
    if len(set(verdicts.values())) > 1:
        claim.caveats.append(
            f"the verdict is for {primary[1]} on {primary[0]} with excluded LR x{primary[2]:g}; "
            "other settings differ (see above)"
        )
    claim.caveats.append(_margin_note(ACCURACY_MARGIN))
    return claim


def _lamb_arm_verdict(comparisons: list[Comparison]) -> tuple[str, str]:
    """Claim 2 for one LAMB arm, from its comparisons with WA-LARS at the largest batch
    size: far below at the smallest LR and close (equivalent or above) at the largest."""
    used, _ = deciding(comparisons)
    largest = max(c.batch for c in used)
    at_largest = [c for c in used if c.batch == largest]  # sorted by LR
    small = at_largest[0].outcome
    if small in (HIGHER, EQUIVALENT):
        return NOT_HOLD, f"at B={largest} it is not below WA-LARS at the smallest LR"
    if small != LOWER:
        return UNDECIDED_VERDICT, (
            f"at B={largest}, {at_largest[0].where.split(', ')[-1]}, the interval straddles "
            "the margin"
        )
    if len(at_largest) == 1:
        return PART, (
            f"below WA-LARS at B={largest}; one LR only, so the small-LR-versus-large-LR "
            "pattern is not tested"
        )
    top = at_largest[-1].outcome
    if top in (HIGHER, EQUIVALENT):
        return HOLDS, f"at B={largest} below WA-LARS at the smallest LR, close at the largest"
    return PART, (
        f"at B={largest} below WA-LARS at the smallest LR, and "
        + (
            "also below at the largest (weak at every LR)"
            if top == LOWER
            else "undecided at the largest"
        )
    )


def claim_lamb_weak(runs: list[Run]) -> Claim:
    claim = Claim(
        "LAMB is weak at small learning rates and large batches",
        "Table I: LAMB far below LARS at the two smaller LRs of each block, the gap widening "
        "with the batch size (e.g. 14.8 vs 79.5 at B=16384, lr 15); close at the largest LR.",
    )
    table = cells_by_context(runs)
    init = main_init(_done(runs))
    for lamb, meaning in LAMB_ARMS.items():
        comparisons, lines = [], []
        for (_dataset, batch, lr, scale, cell_init), arms in sorted(table.items()):
            if lamb in arms and "WA-LARS" in arms and scale == 1.0 and cell_init == init:
                c = compare_accuracy(f"B={batch}, lr {lr:g}", arms[lamb], arms["WA-LARS"], batch)
                comparisons.append(c)
                lines.append("  - " + _line(c, lamb, arms[lamb], "WA-LARS", arms["WA-LARS"]))
        if not comparisons:
            continue
        lamb_runs = [r for r in _done(runs) if arm(r) == lamb and r.init == init]
        optimizer_lrs = sorted({r.optimizer_lr for r in lamb_runs})
        claim.evidence.append(
            f"**{lamb}** ({meaning}; its optimizer LRs: "
            + ", ".join(f"{x:g}" for x in optimizer_lrs)
            + "):"
        )
        claim.evidence += lines
        diverged = sum(r.diverged for r in lamb_runs)
        if diverged:
            claim.evidence.append(f"  - {lamb} diverged in {diverged} of its {len(lamb_runs)} runs")
        claim.by_arm[lamb], why = _lamb_arm_verdict(comparisons)
        claim.evidence.append(f"  - {why}: {claim.by_arm[lamb]}")
    if not claim.by_arm:
        return claim
    claim.verdict = "; ".join(f"{v} for {name}" for name, v in claim.by_arm.items())
    if len(claim.by_arm) == 2 and len(set(claim.by_arm.values())) > 1:
        claim.caveats.append(
            "the two LAMBs differ in the LR they get: at the paper's LRs (10-19) LAMB moves "
            "each adapted layer by about lr x |w| per step, a thousand times LARS's "
            "lr x eta x |w|; at the LR x eta it takes LARS's relative step, and the gap to "
            "LARS is what is left once the LRs are comparable"
        )
    claim.caveats.append(_margin_note(ACCURACY_MARGIN))
    return claim


#: Claim 3: the instability difference a seed gets when one arm diverged and the other did
#: not (a diverged run's curve is flat after it stops, so its jitter says nothing).
DIVERGENCE_PENALTY = 100.0


def _instability_comparison(where: str, nowa: list[Run], wa: list[Run], batch: int) -> Comparison:
    """NOWA-LARS against WA-LARS, HIGHER = less stable: per seed, the difference of the
    epoch-to-epoch change of test accuracy over the second half of training, or
    ±:data:`DIVERGENCE_PENALTY` where only one arm diverged (0 where both did)."""
    runs_nowa = {r.seed: r for r in nowa}
    runs_wa = {r.seed: r for r in wa}

    def difference(seed: int) -> float:
        a, b = runs_nowa[seed], runs_wa[seed]
        if a.diverged or b.diverged:
            return DIVERGENCE_PENALTY * (a.diverged - b.diverged)
        return a.instability() - b.instability()

    seeds = sorted(set(runs_nowa) & set(runs_wa))
    values = {seed: difference(seed) for seed in seeds}
    return Comparison(where, paired(values, dict.fromkeys(values, 0.0), INSTABILITY_MARGIN), batch)


def claim_nowa_unstable(runs: list[Run]) -> Claim:
    claim = Claim(
        "LARS without warm-up (NOWA-LARS) is unstable",
        "Section IV-B and Figure 2: without warm-up the LNR collapses early and training is "
        "unstable.",
    )
    comparisons = []
    for (_dataset, batch, lr, _scale, _init), arms in sorted(cells_by_context(runs).items()):
        if "NOWA-LARS" not in arms or "WA-LARS" not in arms:
            continue
        nowa, wa = arms["NOWA-LARS"], arms["WA-LARS"]
        c = _instability_comparison(f"B={batch}, lr {lr:g}", nowa, wa, batch)
        comparisons.append(c)
        jitter_nowa = stat(r.instability() for r in nowa)
        jitter_wa = stat(r.instability() for r in wa)
        claim.evidence.append(
            f"{c.where}: diverged {sum(r.diverged for r in nowa)}/{len(nowa)} vs "
            f"{sum(r.diverged for r in wa)}/{len(wa)}; epoch-to-epoch test-accuracy change "
            f"over the second half {jitter_nowa.text()} vs {jitter_wa.text()} points "
            f"(NOWA vs WA); paired difference {c.result.text()} → NOWA-LARS "
            + (
                "less stable"
                if c.outcome == HIGHER
                else "more stable"
                if c.outcome == LOWER
                else c.outcome
            )
        )
    if not comparisons:
        return claim
    used, note = deciding(comparisons)
    claim.verdict = combine([c.outcome for c in used])
    claim.evidence.append(note)
    claim.caveats.append(
        "less stable = a larger epoch-to-epoch change of test accuracy over the second half "
        f"of training; a seed where only one arm diverged counts ±{DIVERGENCE_PENALTY:g} "
        "points; " + _margin_note(INSTABILITY_MARGIN)
    )
    return claim


def epoch_margin(runs: list[Run]) -> float:
    """Claim 4's margin in epochs: :data:`EPOCH_MARGIN_SHARE` of the longest run."""
    return max(1.0, EPOCH_MARGIN_SHARE * max((r.epochs for r in runs), default=0))


def claim_tvlars_converges_faster(runs: list[Run]) -> Claim:
    claim = Claim(
        "TVLARS converges faster than LARS and LAMB at batch 16K",
        "Section VI-B: at B=16K, lr 19, TVLARS reaches its optimum after 20 epochs against "
        "60-80 for LARS and LAMB.",
    )
    table = cells_by_context(runs)
    init = main_init(_done(runs))
    by_arm: dict[str, list[Comparison]] = defaultdict(list)
    for key in sorted(k for k in table if k[1] >= 16384 and "WA-LARS" in table[k]):
        _dataset, batch, lr, scale, cell_init = key
        arms = table[key]
        wa = arms["WA-LARS"]
        for name, members in sorted(arms.items()):
            if not name.startswith("TVLARS"):
                continue
            where = f"B={batch}, lr {lr:g}, excluded LR x{scale:g}" + (
                "" if cell_init == init else f", {cell_init}"
            )
            epochs = paired(
                by_seed((r.seed, r.epochs_to_converge()) for r in members),
                by_seed((r.seed, r.epochs_to_converge()) for r in wa),
                epoch_margin(members + wa),
            )
            accuracy = compare_accuracy(where, members, wa, batch)
            # Reaching 95% of a poor best sooner is no win: a faster arm must not be less
            # accurate beyond the margin.
            outcome = epochs.outcome
            if outcome == LOWER and accuracy.outcome == LOWER:
                outcome = UNDECIDED
            by_arm[name].append(Comparison(where, epochs, batch, forced=outcome))
            claim.evidence.append(
                f"{where}: epochs to 95% of the run's best: {name} "
                f"{stat(r.epochs_to_converge() for r in members).text_n()} vs WA-LARS "
                f"{stat(r.epochs_to_converge() for r in wa).text_n()} (of {members[0].epochs}); "
                f"paired difference {epochs.text('epochs')} → "
                + {LOWER: "faster", HIGHER: "slower"}.get(outcome, outcome)
                + f"; accuracy difference {accuracy.result.text()}"
            )
    if not by_arm:
        return claim
    primary = sorted(by_arm, key=lambda name: ("paper shape" in name, name))[0]
    used, note = deciding(by_arm[primary])
    # As fast within the margin leaves it undecided: a schedule that ends with the run
    # brings every arm to its best near the end, whatever its speed before.
    claim.verdict = combine([c.outcome for c in used], support=LOWER, against=(HIGHER,))
    claim.evidence.append(f"{primary}: {note}")
    claim.caveats.append(
        "compared with WA-LARS only; faster = reaches 95% of its best by more than "
        f"{EPOCH_MARGIN_SHARE:.0%} of the run's epochs (at least one) sooner, without lower "
        "accuracy; as fast within the margin is undecided (a schedule that ends with the "
        "run brings every arm to its best near the end); "
        + _margin_note(epoch_margin(_done(runs)), "epochs")
    )
    return claim


def claim_lambda_by_batch(runs: list[Run]) -> Claim:
    claim = Claim(
        "A small lambda is better at batch 1K, a larger one at 16K",
        "Section VI-C1, Figure 6: at B=1K smaller lambda gives higher accuracy (~84% at 1e-5); "
        "at B=16K larger lambdas (1e-2, 5e-3, 1e-3) do better.",
    )
    # Literal lambdas and paper-shape ones are separate series (both may hold 1e-4).
    by_batch: dict[tuple, dict[float, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in _done(runs):
        if run.optimizer == "tvlars" and run.excluded_lr_scale == 1.0:
            key = (run.batch_size, run.lr, run.init, run.tv_decay is None, run.setting_note)
            by_batch[key][run.decay_value].append(run)
    usable = {k: v for k, v in by_batch.items() if len(v) >= 2}
    if not usable:
        return claim
    small_batch = min(usable, key=lambda k: (k[0], -len(usable[k])))
    large_batch = max(usable, key=lambda k: (k[0], len(usable[k])))
    comparisons = []
    for key, wants_small in ((small_batch, True), (large_batch, False)):
        values = usable[key]
        lams = sorted(values)
        listed = ", ".join(
            f"λ={lam:g}: {stat(r.final_acc for r in values[lam]).text_n()}" for lam in lams
        )
        claim.evidence.append(f"B={key[0]}, lr {key[1]:g}: {listed}")
        # The claim's direction at this batch: the favoured end of the lambda range
        # against the other end.
        better, worse = (lams[0], lams[-1]) if wants_small else (lams[-1], lams[0])
        c = compare_accuracy(
            f"B={key[0]}: λ={better:g} vs λ={worse:g}", values[better], values[worse], key[0]
        )
        comparisons.append(c)
        claim.evidence.append(f"  - {c.where}: {c.result.text()} → λ={better:g} {c.outcome}")
        if small_batch == large_batch:
            break
    used, note = deciding(comparisons)
    claim.evidence.append(note)
    claim.verdict = combine([c.outcome for c in used])
    if small_batch == large_batch:
        claim.caveats.append("only one batch size has several lambdas: half the claim is tested")
        if claim.verdict == HOLDS:
            claim.verdict = PART
    claim.caveats.append(
        "λ is the paper's per-step value; 'paper shape' cells scale it to this run's length; "
        + _margin_note(ACCURACY_MARGIN)
    )
    return claim


def claim_init_irrelevant(runs: list[Run]) -> Claim:
    claim = Claim(
        "The weight initialization hardly matters",
        "Section VI-C3, Figure 8: accuracies with Xavier/Kaiming uniform/normal are nearly "
        "unchanged.",
    )
    groups: dict[tuple, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in _done(runs):
        groups[(setting(run), run.batch_size, run.lr, run.excluded_lr_scale, arm(run))][
            run.init
        ].append(run)
    comparisons = []
    for key, inits in sorted(groups.items()):
        names = sorted(inits)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                c = Comparison(
                    f"{key[4]}, B={key[1]}, lr {key[2]:g}: {first} vs {second}",
                    paired(accuracies(inits[first]), accuracies(inits[second]), INIT_MARGIN),
                    key[1],
                )
                comparisons.append(c)
                claim.evidence.append(f"{c.where}: {c.result.text()} → {c.outcome}")
    if not comparisons:
        return claim
    used, note = deciding(comparisons)
    claim.evidence.append(note)
    # "Hardly matters" holds where inits agree to within the margin.
    claim.verdict = combine([c.outcome for c in used], support=EQUIVALENT, against=(HIGHER, LOWER))
    claim.caveats.append(
        f"hardly matters = every pair of inits agrees to within ±{INIT_MARGIN:g} points; "
        + _margin_note(INIT_MARGIN)
    )
    return claim


def claim_higher_lr_better(runs: list[Run]) -> Claim:
    claim = Claim(
        "A higher learning rate gives higher accuracy",
        "Section VI-C2, Figure 7: the higher the LR, the lower the loss and the higher the "
        "accuracy.",
    )
    groups: dict[tuple, dict[float, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in _done(runs):
        groups[(setting(run), run.batch_size, run.excluded_lr_scale, run.init, arm(run))][
            run.lr
        ].append(run)
    comparisons = []
    for key, lrs in sorted(groups.items()):
        if len(lrs) < 2:
            continue
        low, high = min(lrs), max(lrs)
        c = compare_accuracy(f"{key[4]}, B={key[1]}", lrs[high], lrs[low], key[1])
        comparisons.append(c)
        claim.evidence.append(_line(c, f"lr {high:g}", lrs[high], f"lr {low:g}", lrs[low]))
    if not comparisons:
        return claim
    used, note = deciding(comparisons)
    claim.evidence.append(note)
    claim.verdict = combine([c.outcome for c in used])
    claim.caveats.append(_margin_note(ACCURACY_MARGIN))
    return claim


CLAIMS = (
    claim_tvlars_beats_lars,
    claim_lamb_weak,
    claim_nowa_unstable,
    claim_tvlars_converges_faster,
    claim_lambda_by_batch,
    claim_init_irrelevant,
    claim_higher_lr_better,
)


def evaluate_claims(runs: list[Run]) -> list[Claim]:
    return [check(runs) for check in CLAIMS]
