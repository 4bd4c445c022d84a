"""The audio judge's objective: one small CNN (models/classifier.py) over a log-mel picture of a
one-second window, with three heads in its logits, trained together on labels that rendering a
score gives for free (train/audio_judge.py):

  logits[:, :12]        the pitch classes sounding in the window (multi-label: 12 sigmoids, binary
                        cross-entropy), read from the score;
  logits[:, 12:12 + P]  the General MIDI program it was played with (softmax over PROGRAMS);
  logits[:, 12 + P:]    the style of the piece (softmax over STYLES: chorale or folk tune).

The loss is the sum of the three. Its penultimate features are what the Fréchet audio distance
compares (eval/audio_fad.py), as FID compares Inception's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHROMA = 12
PROGRAMS = {0: "piano", 19: "organ", 48: "strings", 73: "flute"}  # General MIDI program -> name
STYLES = ("chorale", "folk")


def split_logits(logits: torch.Tensor, n_programs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chroma (B, 12), program (B, P), style (B, S)) logits of the judge's (B, 12 + P + S)."""
    return logits[:, :CHROMA], logits[:, CHROMA:CHROMA + n_programs], logits[:, CHROMA + n_programs:]


def heads_loss(logits: torch.Tensor, labels: torch.Tensor, n_programs: int) -> torch.Tensor:
    """The summed losses of the three heads; labels (B, 14): 12 chroma bits, program index, style index."""
    chroma, program, style = split_logits(logits.float(), n_programs)
    return (F.binary_cross_entropy_with_logits(chroma, labels[:, :CHROMA].float())
            + F.cross_entropy(program, labels[:, CHROMA]) + F.cross_entropy(style, labels[:, CHROMA + 1]))


def head_counts(logits: torch.Tensor, labels: torch.Tensor, n_programs: int) -> dict[str, int]:
    """Counts the accuracies are made of: chroma true positives, predicted and actual pitch
    classes (for F1), right programs, right styles, windows."""
    chroma, program, style = split_logits(logits, n_programs)
    said, truth = chroma > 0, labels[:, :CHROMA].bool()
    return {"tp": int((said & truth).sum()), "said": int(said.sum()), "true": int(truth.sum()),
            "program": int((program.argmax(1) == labels[:, CHROMA]).sum()),
            "style": int((style.argmax(1) == labels[:, CHROMA + 1]).sum()), "n": len(labels)}


def accuracies(counts: dict[str, int]) -> dict[str, float]:
    """chroma_f1 (pitch classes, micro-averaged), program_acc and style_acc from head_counts sums."""
    f1 = 2 * counts["tp"] / max(counts["said"] + counts["true"], 1)
    n = max(counts["n"], 1)
    return {"chroma_f1": f1, "program_acc": counts["program"] / n, "style_acc": counts["style"] / n}


class AudioJudgeObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, model: nn.Module, n_programs: int):
        self.model, self.n_programs = model, n_programs

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def loss(self, batch, phase: str = "main"):
        x, labels = batch  # (B, 1, n_mels, frames) in [0, 1], (B, 14)
        loss = heads_loss(self.model(x.float()), labels, self.n_programs)
        return loss, {"loss": loss.detach(), "images": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        loss, totals = 0.0, {}
        for x, labels in batches:
            logits = self.model(x.float())
            loss += float(heads_loss(logits, labels, self.n_programs)) * len(x)
            for k, v in head_counts(logits, labels, self.n_programs).items():
                totals[k] = totals.get(k, 0) + v
        return {"val_loss": loss / max(totals.get("n", 0), 1),
                **{f"val_{k}": v for k, v in accuracies(totals).items()}}
