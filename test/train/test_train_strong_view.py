"""The strong view keeps images and targets aligned, so weak-to-strong consistency compares like with like."""

from __future__ import annotations

import pytest
import torch

from cct_surgical_seg.train import strong_view as S


def test_cutmix_pastes_image_and_target_from_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("JITTER", 0.0), ("GRAYSCALE_P", 0.0), ("BLUR_P", 0.0), ("CUTMIX_P", 1.0)):
        monkeypatch.setattr(S, name, value)
    n, classes = 4, 4
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 48).clone()
    target = torch.zeros(n, classes, 8, 12)
    for i in range(n):
        target[i, i] = 5.0  # the target names its frame
    g = torch.Generator().manual_seed(0)
    x_s, t_s = S.strong_view(x, target, g)
    source_of_image = x_s[:, 0, ::4, ::4].round().long()  # one pixel per target cell
    assert torch.equal(source_of_image, t_s.argmax(dim=1))
    pasted = (source_of_image != torch.arange(n).view(n, 1, 1)).float().mean(dim=(1, 2))
    assert torch.all((pasted > 0.03) & (pasted < 0.3))


def test_photometric_changes_keep_geometry_and_target() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 16, 16)
    target = torch.randn(1, 2, 4, 4).expand(3, 2, 4, 4).contiguous()  # identical frames: CutMix is a no-op
    same = x[:1].expand(3, 3, 16, 16).contiguous()
    x_s, t_s = S.strong_view(same, target, torch.Generator().manual_seed(1))
    assert x_s.shape == x.shape and torch.equal(t_s, target)
    assert not torch.allclose(x_s[0], x[0])
