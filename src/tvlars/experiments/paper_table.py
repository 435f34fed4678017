"""The paper's Table I as data: test accuracy (%) of LARS, LAMB and TVLARS.

Source: T.-D. Do, Q. Nguyen, H. Nguyen, L. Tran-Thanh, T. Tran, Q. Pham, "Revisiting LARS
for Large Batch Training Generalization of Neural Networks", Table I ("Accuracy (%) of
LARS, LAMB, and TVLARS. Weight initialization is Xavier Uniform"); transcribed from the
text extraction in ``shared/paper/000_2e0d565a51382d55.txt``.

Layout (as printed): six blocks, one per batch size; each block has a row of learning
rates and one row per optimizer (LARS, LAMB, TVLARS); the twelve columns are
(task, dataset, learning rate): classification (lambda = 1e-4) then Barlow Twins
(lambda = 1e-5), each on CIFAR-10 then "ImageNet" (Tiny ImageNet, per Section VI-A), each
at the three learning rates of the block. The extraction lists each column's three values
(LARS, LAMB, TVLARS) together, so rows here are read column by column.

Table I's LARS and LAMB are the warm-up variants (Section VI-B blames "the warm-up
strategy" for their slow convergence), so they map to WA-LARS and WA-LAMB; TVLARS runs
with the caption's lambda and no scheduler.
"""

from __future__ import annotations

SOURCE = (
    "Do et al., 'Revisiting LARS for Large Batch Training Generalization of Neural "
    "Networks', Table I (accuracy %, Xavier Uniform init; classification lambda 1e-4, "
    "Barlow Twins lambda 1e-5)"
)

#: The learning rates of each batch size's block (Section VI-A lists the same sets; the
#: extraction garbled some header cells: "\overline{c}" is 2, "tau" is 7, "\mathbf{1}" is 1).
LEARNING_RATES: dict[int, tuple[float, float, float]] = {
    512: (1, 2, 3),
    1024: (2, 3, 4),
    2048: (5, 6, 7),
    4096: (8, 9, 10),
    8192: (10, 12, 15),
    16384: (15, 17, 19),
}
#: Column groups in printed order: (task, dataset); each spans the block's three LRs.
COLUMN_GROUPS: tuple[tuple[str, str], ...] = (
    ("classification", "cifar10"),
    ("classification", "tinyimagenet"),
    ("barlow-twins", "cifar10"),
    ("barlow-twins", "tinyimagenet"),
)
#: The table's row names and the method names this package gives them.
METHODS: dict[str, str] = {"LARS": "WA-LARS", "LAMB": "WA-LAMB", "TVLARS": "TVLARS"}
#: The lambda each task ran TVLARS with (the table's column headers).
TASK_LAMBDA: dict[str, float] = {"classification": 1e-4, "barlow-twins": 1e-5}

# Per batch size, twelve columns in printed order, each (LARS, LAMB, TVLARS).
_COLUMNS: dict[int, tuple[tuple[float, float, float], ...]] = {
    512: (
        (74.64, 57.88, 78.92), (77.49, 64.76, 81.42), (79.64, 78.39, 81.56),
        (33.72, 20.28, 37.56), (36.60, 41.40, 39.28), (38.92, 37.52, 39.64),
        (51.31, 10.01, 69.96), (58.89, 12.01, 69.72), (60.76, 67.31, 70.54),
        (18.32, 13.46, 29.02), (19.52, 17.75, 31.01), (21.12, 27.37, 31.44),
    ),
    1024: (
        (74.70, 52.06, 81.84), (78.83, 57.83, 82.58), (80.52, 79.98, 82.54),
        (33.80, 16.88, 39.60), (36.84, 31.84, 39.16), (38.52, 37.76, 39.40),
        (61.13, 12.03, 67.38), (67.03, 15.03, 69.80), (68.98, 69.49, 71.13),
        (19.96, 16.44, 28.98), (19.36, 16.70, 27.46), (20.38, 24.53, 28.32),
    ),
    2048: (
        (75.22, 43.12, 81.52), (79.49, 47.88, 82.22), (81.10, 81.43, 82.44),
        (34.48, 12.60, 39.56), (38.04, 18.56, 39.56), (40.44, 39.92, 41.68),
        (52.42, 10.01, 62.61), (57.35, 15.64, 61.71), (52.42, 60.08, 61.05),
        (19.92, 18.67, 26.15), (20.33, 21.98, 23.43), (19.98, 23.43, 27.08),
    ),
    4096: (
        (75.63, 22.32, 80.90), (80.96, 37.52, 80.96), (82.49, 81.53, 81.16),
        (34.24, 5.24, 38.28), (38.56, 10.76, 39.96), (40.40, 39.00, 41.64),
        (52.77, 48.93, 57.96), (55.74, 50.19, 58.28), (55.98, 53.38, 60.46),
        (19.45, 13.78, 24.29), (20.20, 15.66, 24.29), (20.25, 21.45, 24.92),
    ),
    8192: (
        (77.59, 16.14, 81.16), (81.75, 19.85, 82.42), (82.50, 81.78, 82.74),
        (34.36, 1.12, 36.48), (38.12, 2.48, 39.20), (42.00, 39.20, 42.32),
        (50.29, 42.22, 54.14), (52.78, 45.26, 53.56), (9.65, 52.39, 52.24),
        (19.69, 19.60, 23.41), (20.79, 23.44, 23.47), (21.62, 23.55, 24.26),
    ),
    16384: (
        (79.46, 14.82, 80.20), (80.62, 11.97, 80.42), (38.57, 77.16, 80.42),
        (35.60, 0.84, 38.56), (39.72, 0.92, 40.32), (41.72, 37.28, 42.08),
        (48.27, 42.26, 49.16), (48.26, 44.02, 49.84), (49.05, 49.65, 50.15),
        (20.97, 20.34, 25.82), (21.54, 23.58, 24.95), (22.42, 23.78, 25.91),
    ),
}  # fmt: skip

#: Cells whose printed value looks odd against its neighbours; transcribed as printed.
#: Keys: (task, dataset, batch, paper method, lr).
UNCERTAIN: dict[tuple[str, str, int, str, float], str] = {
    ("classification", "cifar10", 16384, "LARS", 19): (
        "38.57, far below 80.62 at LR 17: printed so (a divergence, or a typo)"
    ),
    ("classification", "tinyimagenet", 512, "LAMB", 2): (
        "41.40 is above LAMB's 37.52 at LR 3 and above LARS and TVLARS in its column"
    ),
    ("barlow-twins", "cifar10", 2048, "LARS", 7): (
        "52.42 repeats the LR-5 value of the same row exactly (possibly copied)"
    ),
    ("barlow-twins", "cifar10", 8192, "LARS", 15): (
        "09.65, near chance, after 52.78 at LR 12: printed so"
    ),
}


def paper_accuracy(task: str, dataset: str, batch_size: int, method: str, lr: float):
    """Table I's accuracy for one cell, or ``None`` if the table has no such cell.

    ``method`` is this package's name (WA-LARS, WA-LAMB, TVLARS) or the table's (LARS,
    LAMB, TVLARS)."""
    row_names = {ours: theirs for theirs, ours in METHODS.items()}
    paper_method = row_names.get(method, method)
    if paper_method not in METHODS or batch_size not in _COLUMNS:
        return None
    if (task, dataset) not in COLUMN_GROUPS:
        return None
    lrs = LEARNING_RATES[batch_size]
    if float(lr) not in [float(x) for x in lrs]:
        return None
    group = COLUMN_GROUPS.index((task, dataset))
    column = group * 3 + [float(x) for x in lrs].index(float(lr))
    return _COLUMNS[batch_size][column][list(METHODS).index(paper_method)]


def rows() -> list[dict]:
    """Every cell of the table as a flat record (54 per task and dataset, 216 in all)."""
    records = []
    for batch_size, columns in _COLUMNS.items():
        for column, values in enumerate(columns):
            task, dataset = COLUMN_GROUPS[column // 3]
            lr = LEARNING_RATES[batch_size][column % 3]
            for paper_method, value in zip(METHODS, values, strict=True):
                records.append(
                    {
                        "task": task,
                        "dataset": dataset,
                        "batch_size": batch_size,
                        "method": METHODS[paper_method],
                        "paper_method": paper_method,
                        "lr": lr,
                        "accuracy": value,
                        "uncertain": UNCERTAIN.get(
                            (task, dataset, batch_size, paper_method, lr), ""
                        ),
                    }
                )
    return records


def shape() -> tuple[int, int, int]:
    """(batch sizes, methods, columns): (6, 3, 12) for the printed table."""
    columns = {len(c) for c in _COLUMNS.values()}
    return len(_COLUMNS), len(METHODS), columns.pop() if len(columns) == 1 else -1
