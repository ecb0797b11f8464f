"""DistributedDataParallel on CPU (gloo), 2 processes: both ranks end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train_helpers import make_dataset, tiny_config

from cct_surgical_seg.train import trainer as T


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, data: str, out: str) -> None:
    """One torchrun-like rank: the environment torchrun would set, then the normal training path."""
    torch.set_num_threads(1)
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    cfg = tiny_config(warmup_steps=1, cct_steps=2, val_every=3, checkpoint_every=3)
    ctx, device = T.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size) == (rank, 2) and dist.get_backend() == "gloo"
    run = Path(out) / "run"
    trainer = T.Trainer(cfg, T.prepare_data(cfg, Path(data), run, ctx), run, ctx, device)
    metrics = trainer.fit()
    torch.save(
        {"weights": trainer.model.state_dict(), "dice": metrics["mean_dice"], "pixels": metrics["pixels"]},
        Path(out) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_two_gloo_ranks_train_in_lockstep(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", labelled=12, unlabelled=8, groups=3)
    mp.spawn(_worker, args=(_free_port(), str(data), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key, value in r0["weights"].items():
        assert torch.equal(value, r1["weights"][key]), key
    initial = T.Trainer(
        tiny_config(),
        T.prepare_data(tiny_config(), data, tmp_path / "x"),
        tmp_path / "x",
        device=torch.device("cpu"),
    ).model.state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in r0["weights"].items() if v.is_floating_point())
    # validation is sharded and summed: both ranks report the figures of all 4 val frames
    assert r0["dice"] == r1["dice"] and r0["pixels"] == r1["pixels"] == 4 * 48 * 64
    # rank 0 alone writes the run directory
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]
    assert state["step"] == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
