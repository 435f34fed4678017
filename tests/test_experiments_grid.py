"""Sweep grids: method names, expansion counts, presets, run ids, TOML grids."""

from __future__ import annotations

import pytest

from tvlars.experiments import paper_table
from tvlars.experiments.custom import load_toml
from tvlars.experiments.grid import (
    METHOD_LR_FACTOR,
    METHOD_PRESET,
    METHODS,
    SweepSpec,
    expand,
    expand_all,
    method_name,
    method_settings,
)
from tvlars.experiments.presets import PRESETS, get_preset, paper_shape_decay, top_lr


def test_paper_methods_map_to_optimizer_and_schedule():
    assert method_settings("WA-LARS") == ("lars", "warmup-cosine")
    assert method_settings("NOWA-LARS") == ("lars", "poly")
    assert method_settings("WA-LAMB") == ("lamb", "warmup-cosine")
    assert method_settings("NOWA-LAMB") == ("lamb", "poly")
    assert method_settings("TVLARS") == ("tvlars", "none")


def test_any_optimizer_schedule_pair_is_a_method():
    assert method_settings("lamb:tv") == ("lamb", "tv")
    assert method_name("lamb", "tv") == "lamb:tv"
    # A run made by hand gets its paper name back from its optimizer, schedule and preset
    # (WA-LAMB·η is told apart only by the LR factor a sweep records).
    for name in METHODS:
        if name not in METHOD_LR_FACTOR:
            assert method_name(*method_settings(name), METHOD_PRESET.get(name, "paper")) == name


def test_wa_lamb_is_the_authors_lamb_at_the_grid_lr_and_wa_lamb_eta_the_standard_at_lr_x_eta():
    spec = SweepSpec(name="t", methods=("WA-LAMB", "WA-LAMB-eta"), batches={16384: (19,)})
    lamb, eta = expand(spec)
    assert (lamb.method, lamb.config.preset, lamb.config.lr) == ("WA-LAMB", "official", 19.0)
    assert (eta.method, eta.config.preset) == ("WA-LAMB·η", "paper")
    assert eta.config.lr == pytest.approx(0.019)
    assert eta.table_lr == 19.0 and eta.describe()["lr"] == 19.0
    assert eta.describe()["optimizer_lr"] == pytest.approx(0.019)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        method_settings("LARS-9000")


def test_a_grid_is_the_product_of_its_axes():
    spec = SweepSpec(
        name="t",
        methods=("WA-LARS", "TVLARS"),
        batches={512: (1, 2), 1024: (3,)},
        seeds=(0, 1),
        inits=("xavier_uniform", "kaiming_normal"),
        lambdas={"classification": (1e-4, 1e-3)},
        tv_decays=(10.0,),
        excluded_lr_scales=(1.0, 1e-3),
    )
    # 3 (batch, lr) pairs x 2 inits x 2 scales x 2 seeds x (1 for WA-LARS + 3 for TVLARS)
    assert len(expand(spec)) == 3 * 2 * 2 * 2 * (1 + 3)


def test_lambda_is_left_at_its_default_where_the_method_ignores_it():
    spec = SweepSpec(
        name="t",
        methods=("WA-LARS",),
        batches={512: (1,)},
        lambdas={"classification": (1e-4, 1e-2)},
    )
    (cell,) = expand(spec)
    assert cell.config.tv_decay is None


def test_the_same_cell_in_two_grids_runs_once():
    a = SweepSpec(name="a", methods=("WA-LARS", "TVLARS"), batches={512: (1,)})
    b = SweepSpec(name="b", methods=("WA-LARS",), batches={512: (1, 2)})
    assert len(expand_all([a, b])) == 3


def test_run_ids_are_stable_and_distinct():
    cells = expand_all(get_preset("cpu").specs)
    again = expand_all(get_preset("cpu").specs)
    assert [c.run_id() for c in cells] == [c.run_id() for c in again]
    assert len({c.run_id() for c in cells}) == len(cells)
    assert all(c.run_id() == c.config.run_id() for c in cells if c.task == "classification")


def test_threads_and_output_folder_do_not_change_a_run_id():
    import dataclasses

    (cell,) = expand(SweepSpec(name="t", methods=("TVLARS",), batches={512: (1,)}))
    moved = dataclasses.replace(cell.config, out="/elsewhere", threads=7)
    assert moved.run_id() == cell.run_id()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_expands_to_valid_configs(name):
    cells = expand_all(get_preset(name).specs)
    assert cells
    for cell in cells:
        cell.config.resolved()  # raises on an invalid value


def test_preset_cell_counts():
    counts = {name: len(expand_all(p.specs)) for name, p in PRESETS.items()}
    # 4 methods x 3 seeds at one batch size and LR
    assert counts["quick"] == 12
    # 6 batch sizes x 3 LRs x 4 methods x 2 tasks
    assert counts["paper-cifar10"] == counts["paper-tinyimagenet"] == 144
    # classification 113 (table 24, seeds +33, excluded LR 6, lambda 8 + 8, LR +24,
    # init 6 + 4), Barlow Twins 16 (4 methods x 3 batches, +2 seeds x 2 methods)
    assert counts["cpu"] == 129


def test_every_cpu_comparison_of_methods_has_three_paired_seeds():
    cells = expand_all(get_preset("cpu").specs)
    seeds: dict[tuple, set[int]] = {}
    for cell in cells:
        c = cell.config
        key = (cell.task, cell.method, c.batch_size, cell.table_lr, c.init, c.excluded_lr_scale)
        seeds.setdefault(key, set()).add(c.seed)
    for batch in (1024, 4096, 16384):
        for method in ("WA-LARS", "NOWA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS"):
            key = ("classification", method, batch, top_lr(batch), "xavier_uniform", 1.0)
            assert seeds[key] == {0, 1, 2}, key
    for method in ("WA-LARS", "TVLARS"):
        key = ("barlow-twins", method, 4096, 10.0, "xavier_uniform", 0.024)
        assert seeds[key] == {0, 1, 2}
    bt_batches = {c.config.batch_size for c in cells if c.task == "barlow-twins"}
    assert len(bt_batches) >= 3
    assert {c.method for c in cells if c.task == "barlow-twins"} == {
        "WA-LARS",
        "WA-LAMB",
        "WA-LAMB·η",
        "TVLARS",
    }


def test_quick_pairs_three_seeds_of_each_of_its_four_arms():
    cells = expand_all(get_preset("quick").specs)
    arms: dict[str, set[int]] = {}
    for cell in cells:
        arms.setdefault(cell.method, set()).add(cell.config.seed)
    assert arms == {m: {0, 1, 2} for m in ("WA-LARS", "WA-LAMB", "WA-LAMB·η", "TVLARS")}


def test_paper_presets_follow_section_vi_a():
    cells = expand_all(get_preset("paper-cifar10").specs)
    assert {(c.config.batch_size, c.table_lr) for c in cells} == {
        (b, float(lr)) for b, lrs in paper_table.LEARNING_RATES.items() for lr in lrs
    }
    for cell in cells:
        c = cell.config.resolved()
        assert (c.epochs, c.warmup_epochs, c.delay_epochs) == (100, 20, 10)
        assert (c.weight_decay, c.momentum, c.init) == (5e-4, 0.9, "xavier_uniform")
        assert c.model == "resnet18"
        if c.optimizer == "tvlars":
            assert c.lmbda == (1e-4 if cell.task == "classification" else 1e-5)
    bt = [c for c in cells if c.task == "barlow-twins"]
    assert bt and all(c.pretrain["pretrain_epochs"] == 1000 for c in bt)
    tiny = expand_all(get_preset("paper-tinyimagenet").specs)
    assert {c.config.resolved().model for c in tiny} == {"resnet34"}


def test_quick_runs_the_cpu_protocol_for_fewer_epochs():
    quick = expand_all(get_preset("quick").specs)
    assert {c.config.epochs for c in quick} == {12}
    for cell in quick:
        c = cell.config
        assert (c.num_samples, c.model, c.micro_batch) == (62_500, "mnist1d-resnet", 4096)


def test_cpu_runs_tvlars_literal_and_paper_shaped_and_both_excluded_lr_scales():
    cells = expand_all(get_preset("cpu").specs)
    big = [c for c in cells if c.config.batch_size == 16384 and c.task == "classification"]
    tv = {
        (c.config.tv_decay is None, c.config.excluded_lr_scale) for c in big if c.method == "TVLARS"
    }
    assert tv >= {(True, 1.0), (False, 1.0), (True, 1e-3)}
    lars = {c.config.excluded_lr_scale for c in big if c.method == "WA-LARS"}
    assert lars == {1.0, 1e-3}
    seeds = {c.config.seed for c in big if c.method in ("WA-LARS", "TVLARS")}
    assert seeds == {0, 1, 2}


def test_paper_shape_decay_reproduces_the_papers_phi():
    # CIFAR-10 at 16384: 3 steps per epoch, 90 epochs after the delay.
    assert paper_shape_decay(16384, 1e-4) == pytest.approx(1e-4 * 3 * 90)


def test_a_toml_file_defines_a_grid(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'methods = ["WA-LARS", "lamb:tv"]\nseeds = [0, 1]\nlambdas = [1e-3]\n'
        "[batches]\n4096 = [8, 10]\n[base]\nepochs = 5\nnum_samples = 62500\n"
    )
    preset = load_toml(path)
    cells = expand_all(preset.specs)
    assert preset.name == "mine"
    assert len(cells) == 2 * 2 * 2
    assert {c.config.epochs for c in cells} == {5}
    assert {c.config.lmbda for c in cells if c.method == "lamb:tv"} == {1e-3}


def test_a_toml_file_names_both_lambs(tmp_path):
    path = tmp_path / "lambs.toml"
    path.write_text('methods = ["WA-LAMB", "WA-LAMB·η", "WA-LAMB-eta"]\n[batches]\n4096 = [10]\n')
    cells = expand_all(load_toml(path).specs)
    assert sorted((c.method, c.config.preset, c.config.lr) for c in cells) == [
        ("WA-LAMB", "official", 10.0),
        ("WA-LAMB·η", "paper", pytest.approx(0.01)),
    ]


def test_a_toml_file_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('methods = ["TVLARS"]\nbatchs = 3\n[batches]\n512 = [1]\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_toml(path)


def test_seed_k_gives_every_arm_the_same_initial_weights_and_data_order(tmp_path):
    # At LR 0 no optimizer moves a weight: what a run ends with is its initial weights and
    # the batch-norm statistics of the batches it saw, in the order it saw them.
    import dataclasses

    import torch

    from tvlars.train import train

    spec = SweepSpec(
        name="pairing",
        methods=("WA-LARS", "WA-LAMB·η", "TVLARS"),
        batches={256: (0.0,)},
        seeds=(1, 2),
        base={"num_samples": 1000, "epochs": 1, "model": "mnist1d-resnet"},
    )
    states = {}
    for cell in expand(spec):
        out = tmp_path / cell.run_id()
        train(dataclasses.replace(cell.config, out=str(out)), progress=False, log=lambda m: None)
        model = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
        states[(cell.method, cell.config.seed)] = model

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    for seed in (1, 2):
        assert same(states[("WA-LARS", seed)], states[("TVLARS", seed)])
        assert same(states[("WA-LARS", seed)], states[("WA-LAMB·η", seed)])
    assert not same(states[("WA-LARS", 1)], states[("WA-LARS", 2)])
