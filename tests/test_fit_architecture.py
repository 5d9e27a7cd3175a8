"""fit's architecture step (fit/architecture.py): the move candidates, their pricing on the moved
network, the greedy choice, and a fit whose budget only moves reach."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgeslim.compress.channels import ChannelAnalysis
from edgeslim.fit.architecture import choose_moves, move_candidates
from edgeslim.fit.costs import CostModel
from edgeslim.fit.select import Selection
from edgeslim.fit.space import Plan, search_space
from edgeslim.layers.graph import ModelGraph
from edgeslim.train.zoo import build_model

LAYER_TECHNIQUES = ("prune", "lowrank", "separable")


def cost_model(model) -> CostModel:
    graph = ModelGraph(model)
    analysis = ChannelAnalysis(graph, lambda layer: True)
    return CostModel(graph, analysis, search_space(graph, analysis, LAYER_TECHNIQUES))


def test_a_downsampling_that_needs_room_comes_with_the_padding_that_makes_it():
    """MNISTnet3's valid 5x5 and 3x3 convolutions leave nothing after a stride on conv1, unless they
    keep their size: the candidate is the compound."""
    found = move_candidates(build_model("mnistnet3", (28, 28, 1), 10))
    assert ("padding:conv2", "padding:conv3", "padding:conv4", "stride:conv1") in found
    assert ("global_pool:flatten",) in found and ("kernel:conv1=3",) in found
    assert not any(c == ("padding:conv2",) for c in found)  # padding alone saves nothing


def test_a_plan_with_moves_is_priced_on_the_moved_network():
    from edgeslim.compress.moves import Move, apply_moves

    model = build_model("lenet5", (28, 28, 1), 10)
    cost = cost_model(model)
    moves = ("stride:conv1", "global_pool:flatten")
    moved = cost_model(apply_moves(model, [Move.parse(m) for m in moves]))
    prune = next(u for u in moved.units if u.kind == "prune")
    plan = Plan((("prune", prune.name, prune.options[2]),), moves=moves)
    assert cost.raw(plan) == moved.raw(Plan(plan.choices))  # the same plan, priced on the moved network
    assert cost.raw(plan)["macs"] < cost.raw(Plan(plan.choices))["macs"] / 2
    assert plan.stages()[0] == {"architecture": {"moves": "stride:conv1|global_pool:flatten"}}
    assert Plan.from_dict(plan.to_dict()) == plan and Plan(plan.choices).to_dict().get("moves") is None
    broken = cost.predict(Plan((), moves=("stride:conv1", "stride:conv2", "stride:conv2")))
    assert math.isinf(broken["max_flash"])  # moves that do not apply together: no plan to price


def selection(flash: float, loss: float, limit: float) -> Selection:
    return Selection(Plan(()), {"max_flash": flash}, loss, flash <= limit)


def test_moves_are_added_while_the_budget_is_out_of_reach_cheapest_loss_first():
    limits = {"max_flash": 100.0}
    reach = {(): 400.0, ("a",): 150.0, ("b",): 250.0, ("a", "b"): 90.0, ("c",): 120.0, ("a", "c"): 110.0}
    plan_on = lambda moves: selection(reach.get(tuple(sorted(moves)), 1e9), 0.01, 100.0)  # noqa: E731
    losses = {("a",): 0.02, ("b",): 0.001, ("c",): 0.5}
    choice = choose_moves([("a",), ("b",), ("c",)], losses, plan_on, limits)
    assert choice.moves == ("b", "a") and choice.selection.feasible  # b buys violation at less loss
    assert choice.loss == pytest.approx(0.02 + 0.001 + 0.01)
    nothing = choose_moves([("c",)], {("c",): 0.1}, lambda moves: selection(400.0, 0.0, 100.0), limits)
    assert nothing.moves == () and not nothing.selection.feasible


def test_a_fit_whose_budget_only_moves_reach_changes_the_architecture(
    digits_model_path, tmp_path, monkeypatch
):
    """The digits CNN cannot get under 800 multiplications by per-layer levels (its 8x8 maps keep
    every position); a stride or a pooling early does, and the winner's plan carries the moves."""
    from edgeslim.cli import main

    monkeypatch.setenv("EDGESLIM_FIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fit"
    code = main(["fit", str(digits_model_path), "--out", str(out), "--max-macs", "800", "--max-loss", "30",
                 "--max-trials", "1", "--finetune-epochs", "3", "--quiet"])  # fmt: skip
    fit = json.loads((out / "fit.json").read_text())
    assert code in (0, 1)
    record = fit["architecture"]
    assert record["moves"] and set(record["candidates"]) >= {"stride:conv1", "global_pool:flatten"}
    assert all(0 <= loss <= 1 for loss in record["candidates"].values())
    # the per-layer search runs on the moved network's own sensitivity, measured after its distillation
    assert record["moved_sensitivity"]["accuracy"] and 0 < record["moved_val_accuracy"] <= 1
    [trial] = fit["trials"]
    assert trial["plan"]["moves"] == record["moves"] and not trial.get("failed")
    assert trial["measured"]["max_macs"] <= 800 or code == 1
    best = fit["best"]
    assert Path(out / best["artifact"]).is_file() and best["plan"]["moves"] == record["moves"]
    assert "(architecture)" in (out / "report" / "report.md").read_text()
