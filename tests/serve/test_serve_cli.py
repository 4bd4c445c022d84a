"""`genforge serve` arguments and checkpoints that cannot be served: one-line errors, exit 2. And
an image checkpoint (a family whose model has sample()) loads as an image model."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest
import torch

from genforge.checkpoint import save_checkpoint
from genforge.cli import main
from genforge.families import FAMILIES, Family
from genforge.serve.registry import load_served


def fails(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genforge serve: error:") and len(err.strip().splitlines()) == 1
    return err


def test_serve_errors(tmp_path, capsys, serve_ckpt):
    assert "no_such_dir" in fails(capsys, ["serve", tmp_path / "no_such_dir"])
    assert "--prompts needs --feedback-db" in fails(capsys, ["serve", serve_ckpt, "--prompts", tmp_path / "p.txt"])
    assert "used by" in fails(capsys, ["serve", f"x={serve_ckpt}", f"x={serve_ckpt}"])
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "no prompts" in fails(capsys, ["serve", serve_ckpt, "--feedback-db", tmp_path / "fb.db",
                                          "--prompts", tmp_path / "empty.txt"])


@dataclass
class DotsConfig:
    size: int = 4


class Dots(torch.nn.Module):
    def __init__(self, cfg: DotsConfig):
        super().__init__()
        self.level = torch.nn.Parameter(torch.full((1, cfg.size, cfg.size), 0.5))

    def sample(self, n, cond=None, generator=None):
        return self.level.expand(n, -1, -1, -1)  # (n, 1, size, size)


def test_image_checkpoint_loads_as_image_model(tmp_path, monkeypatch):
    from genforge.serve.images import generate_images

    monkeypatch.setitem(FAMILIES, "dots", Family(DotsConfig, Dots, "image"))
    ckpt = save_checkpoint(tmp_path / "dots" / "step-0000001", {"family": "dots", "model": asdict(DotsConfig(3))},
                           {"model": Dots(DotsConfig(3))})
    served = load_served(str(ckpt), "cpu")
    assert (served.id, served.kind) == ("dots/step-0000001", "image")
    assert len(generate_images(served.model, 2, seed=0)) == 2

    class NoSample(Dots):
        sample = None

    monkeypatch.setitem(FAMILIES, "dots", Family(DotsConfig, NoSample, "image"))
    with pytest.raises(Exception, match="has no sample"):
        load_served(str(ckpt), "cpu")
    monkeypatch.setitem(FAMILIES, "dots", Family(DotsConfig, Dots, "label"))  # a family that makes no images
    with pytest.raises(Exception, match="neither text nor images"):
        load_served(str(ckpt), "cpu")
