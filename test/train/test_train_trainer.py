"""The training loop on a tiny CPU problem: stages, ramp, learning, exact resume, CSV, checkpoints."""

from __future__ import annotations

import csv
import shutil
import signal
from pathlib import Path

import pytest
import torch
from test_train_helpers import make_dataset, tiny_config

from cct_surgical_seg.train import trainer as T
from cct_surgical_seg.train.losses import ConsistencyWeight


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite on a shared machine
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "ds", labelled=12, unlabelled=12, groups=3)


def _trainer(cfg, dataset: Path, run_dir: Path) -> T.Trainer:
    return T.Trainer(cfg, T.prepare_data(cfg, dataset, run_dir), run_dir, device=torch.device("cpu"))


def _weights(trainer: T.Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _assert_two_plus_two_steps_resume_to(straight: T.Trainer, cfg, dataset: Path, run_dir: Path) -> None:
    """Two steps, a checkpoint, a fresh trainer resuming it and two more steps end on exactly
    ``straight``'s weights (four uninterrupted steps)."""
    first = _trainer(cfg, dataset, run_dir)
    for _ in range(2):
        first.train_step()
    first.save("last.pt")
    resumed = _trainer(cfg, dataset, run_dir)
    resumed.resume(run_dir / "last.pt")
    for _ in range(2):
        resumed.train_step()
    for key, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[key]), key


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_stage_one_is_supervised_and_stage_two_adds_ramped_consistency(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(warmup_steps=2, cct_steps=4, rampup_fraction=1.0)
    trainer = _trainer(cfg, dataset, tmp_path / "run")
    calls = {"cct": 0}
    forward_cct = trainer.model.forward_cct

    def counting(x, compute_aux=True, **options):
        calls["cct"] += 1
        return forward_cct(x, compute_aux, **options)

    trainer.model.forward_cct = counting
    aux_before = {k: v.clone() for k, v in trainer.model.aux_decoders.state_dict().items()}
    stage1 = [trainer.train_step() for _ in range(2)]
    assert calls["cct"] == 0
    assert all(t["stage"] == 1 and t["cons_weight"] == 0 and t["cons_loss"] == 0 for t in stage1)
    for k, v in trainer.model.aux_decoders.state_dict().items():  # aux decoders untouched by warm-up
        assert torch.equal(v, aux_before[k]), k
    stage2 = [trainer.train_step() for _ in range(4)]
    assert calls["cct"] == 4
    assert all(t["stage"] == 2 and t["cons_loss"] > 0 for t in stage2)
    ramp = ConsistencyWeight(30.0, 4, start_step=2)
    weights = [t["cons_weight"] for t in stage2]
    assert weights == pytest.approx([ramp(s) for s in range(2, 6)])
    assert weights[0] < weights[1] < weights[2] < weights[3] < 30.0
    assert all(
        t["loss"] == pytest.approx(t["sup_loss"] + t["cons_weight"] * t["cons_loss"], rel=1e-5)
        for t in stage2
    )
    changed = [
        k
        for k, v in trainer.model.aux_decoders.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, aux_before[k])
    ]
    assert changed  # the CCT stage trains the aux decoders


def test_a_short_run_lowers_the_loss(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(warmup_steps=24, cct_steps=0, val_every=100, checkpoint_every=100)
    trainer = _trainer(cfg, dataset, tmp_path / "run")
    trainer.fit()
    losses = [float(r["sup_loss"]) for r in _rows(tmp_path / "run" / "train_metrics.csv")]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4


def test_interrupted_and_resumed_run_reproduces_the_straight_run(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(warmup_steps=2, cct_steps=4, rampup_fraction=0.5, val_every=2, checkpoint_every=100)
    straight = _trainer(cfg, dataset, tmp_path / "a")
    straight.fit()

    first = _trainer(cfg, dataset, tmp_path / "b")
    step = first.train_step

    def step_then_sigint():  # Ctrl-C arrives in the middle of step 3
        terms = step()
        if first.step == 3:
            signal.raise_signal(signal.SIGINT)
        return terms

    first.train_step = step_then_sigint
    with pytest.raises(T.TrainingInterrupted) as info:
        first.fit()
    assert info.value.signum == signal.SIGINT and first.step == 3  # the step was finished, not cut
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    second = _trainer(cfg, dataset, tmp_path / "b")
    second.resume(tmp_path / "b" / "last.pt")
    assert second.step == 3 and second.stage_of(second.step) == 2
    second.fit()

    a, b = _weights(straight), _weights(second)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert second.best_metric == straight.best_metric
    rows_a = _rows(tmp_path / "a" / "train_metrics.csv")
    rows_b = _rows(tmp_path / "b" / "train_metrics.csv")
    assert [r["step"] for r in rows_b] == [str(s) for s in range(1, 7)]
    assert [r["loss"] for r in rows_b] == [r["loss"] for r in rows_a]
    assert [r["step"] for r in _rows(tmp_path / "b" / "val_metrics.csv")] == ["2", "4", "6"]


def test_resume_drops_rows_logged_after_the_checkpoint(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(warmup_steps=2, cct_steps=2, val_every=1, checkpoint_every=100)
    run = tmp_path / "run"
    trainer = _trainer(cfg, dataset, run)
    trainer.fit(stop_at=2)
    shutil.copy(run / "last.pt", run / "step2.pt")
    trainer.fit(stop_at=3)  # rows for step 3 exist, then the machine "dies" with step2.pt as last checkpoint
    assert [r["step"] for r in _rows(run / "train_metrics.csv")] == ["1", "2", "3"]
    resumed = _trainer(cfg, dataset, run)
    resumed.resume(run / "step2.pt")
    resumed.fit()
    assert [r["step"] for r in _rows(run / "train_metrics.csv")] == ["1", "2", "3", "4"]
    assert [r["step"] for r in _rows(run / "val_metrics.csv")] == ["1", "2", "3", "4"]


def test_checkpoints_load_with_weights_only(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(warmup_steps=1, cct_steps=1, val_every=1, checkpoint_every=1)
    trainer = _trainer(cfg, dataset, tmp_path / "run")
    trainer.fit()
    for name in ("last.pt", "best.pt"):
        data = torch.load(tmp_path / "run" / name, weights_only=True)
        assert data["format"] == "cct_surgical_seg/checkpoint-v1"
        state = data["train_state"]
        assert state["step"] >= 1 and state["config"]["train"]["cct_steps"] == 1
        rng = state["rng"][0]
        assert isinstance(rng["torch"], torch.Tensor) and isinstance(rng["numpy"]["keys"], torch.Tensor)
        assert data["aux_decoders"] is not None and "dice" in data["metrics"]
    assert (tmp_path / "run" / "config.yaml").is_file()
    with pytest.raises(T.CheckpointError, match="model_config"):
        other = tiny_config(warmup_steps=1, cct_steps=1)
        other.model["decoder_channels"] = 24
        _trainer(other, dataset, tmp_path / "other").resume(tmp_path / "run" / "last.pt")


@pytest.mark.parametrize(
    "options",
    [{"consistency_target": "ema"}, {"strong_view": True}, {"confidence_threshold": 0.9}],
    ids=["ema-teacher", "strong-view", "confidence-mask"],
)
def test_consistency_options_train_and_resume_exactly(dataset: Path, tmp_path: Path, options: dict) -> None:
    """Each option of the consistency term trains (finite, non-zero consistency) and resumes bit for bit."""
    cfg = tiny_config(warmup_steps=1, cct_steps=3, rampup_fraction=0.0, **options)
    straight = _trainer(cfg, dataset, tmp_path / "a")
    terms = [straight.train_step() for _ in range(4)]
    assert all(torch.isfinite(torch.tensor(t["loss"])) for t in terms)
    assert all(t["cons_loss"] > 0 for t in terms[1:])
    _assert_two_plus_two_steps_resume_to(straight, cfg, dataset, tmp_path / "b")


def test_aux_decoders_get_their_own_learning_rate(dataset: Path, tmp_path: Path) -> None:
    """aux_lr_mult puts every aux decoder parameter (and only those) in a group at lr * mult,
    which keeps its ratio under the LR schedule and resumes exactly; at 1 there are two groups."""
    cfg = tiny_config(warmup_steps=1, cct_steps=3, rampup_fraction=0.0)
    plain = _trainer(cfg, dataset, tmp_path / "plain")
    assert [g["name"] for g in plain.optimizer.param_groups] == ["backbone", "head"]
    cfg.optim.aux_lr_mult = 10.0
    straight = _trainer(cfg, dataset, tmp_path / "a")
    backbone, head, aux = straight.optimizer.param_groups
    assert aux["name"] == "aux"
    assert {id(p) for p in aux["params"]} == {id(p) for p in straight.model.aux_decoders.parameters()}
    assert not {id(p) for p in aux["params"]} & {id(p) for p in head["params"] + backbone["params"]}
    for _ in range(4):
        straight.train_step()
        assert aux["lr"] == pytest.approx(10.0 * head["lr"])
    _assert_two_plus_two_steps_resume_to(straight, cfg, dataset, tmp_path / "b")


def test_precision_resolves_to_what_the_device_computes_fast() -> None:
    cpu = torch.device("cpu")
    assert T.resolve_precision("fp32", cpu) is None
    assert T.resolve_precision("bf16", cpu) == torch.bfloat16
    assert T.resolve_precision("fp16", cpu) == torch.float16
    expected = torch.bfloat16 if torch.cpu._is_amx_tile_supported() else None
    assert T.resolve_precision("auto", cpu) == expected
