"""The transcription of the paper's Table I, spot-checked against the text."""

from __future__ import annotations

from tvlars.experiments import paper_table
from tvlars.experiments.paper_table import paper_accuracy


def test_the_table_has_six_batch_sizes_three_methods_and_twelve_columns():
    assert paper_table.shape() == (6, 3, 12)
    assert len(paper_table.rows()) == 6 * 3 * 12


def test_learning_rates_are_section_vi_a_sets():
    assert paper_table.LEARNING_RATES == {
        512: (1, 2, 3), 1024: (2, 3, 4), 2048: (5, 6, 7),
        4096: (8, 9, 10), 8192: (10, 12, 15), 16384: (15, 17, 19),
    }  # fmt: skip


def test_spot_checks_against_the_paper_text():
    assert paper_accuracy("classification", "cifar10", 512, "WA-LARS", 1) == 74.64
    assert paper_accuracy("classification", "cifar10", 512, "TVLARS", 3) == 81.56
    assert paper_accuracy("classification", "cifar10", 1024, "WA-LAMB", 4) == 79.98
    assert paper_accuracy("classification", "tinyimagenet", 4096, "WA-LAMB", 8) == 5.24
    assert paper_accuracy("classification", "tinyimagenet", 8192, "TVLARS", 15) == 42.32
    assert paper_accuracy("classification", "cifar10", 16384, "WA-LARS", 19) == 38.57
    assert paper_accuracy("classification", "cifar10", 16384, "WA-LAMB", 19) == 77.16
    assert paper_accuracy("barlow-twins", "cifar10", 2048, "TVLARS", 5) == 62.61
    assert paper_accuracy("barlow-twins", "tinyimagenet", 16384, "TVLARS", 19) == 25.91
    assert paper_accuracy("barlow-twins", "tinyimagenet", 512, "LAMB", 3) == 27.37


def test_cells_outside_the_table_have_no_value():
    assert paper_accuracy("classification", "cifar10", 512, "TVLARS", 19) is None
    assert paper_accuracy("classification", "mnist1d", 512, "TVLARS", 1) is None
    assert paper_accuracy("classification", "cifar10", 512, "NOWA-LARS", 1) is None


def test_tvlars_tops_lars_in_most_classification_cells_as_the_paper_says():
    rows = [r for r in paper_table.rows() if r["task"] == "classification"]
    pairs = {}
    for r in rows:
        pairs.setdefault((r["dataset"], r["batch_size"], r["lr"]), {})[r["method"]] = r["accuracy"]
    wins = sum(p["TVLARS"] > p["WA-LARS"] for p in pairs.values())
    assert wins >= 30 and len(pairs) == 36


def test_uncertain_cells_name_real_cells():
    for task, dataset, batch, method, lr in paper_table.UNCERTAIN:
        assert paper_accuracy(task, dataset, batch, method, lr) is not None
