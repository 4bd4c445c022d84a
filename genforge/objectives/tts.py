"""The acoustic model's objective (FastSpeech 2, Ren et al. 2021, sec. 2.2-2.3): L1 between the
predicted and the teacher's log-mel frames (each band normalised by the training data's mean and
deviation, padding masked) plus the MSE of the predicted log(1 + frames) per phoneme. The decoder
is teacher-forced with the true durations (the length regulator's input while training)."""
from __future__ import annotations

import torch

from genforge.models.tts import AcousticModel


class TTSObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = False  # means over frames and phonemes of the whole batch, not over examples

    def __init__(self, model: AcousticModel):
        self.model = model

    def parameters(self, phase: str):
        """Every parameter but a bundled vocoder's (it was trained on its own and stays as it is)."""
        return [p for name, p in self.model.named_parameters() if not name.startswith("vocoder.")]

    def modules(self) -> dict:
        return {"model": self.model}

    def terms(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """(loss, mel L1, duration MSE, frames) of a batch."""
        ids, durations, mel, voice = batch
        model = self.model
        pred, log_dur, fmask, pmask = model(ids, voice, durations)
        target = (mel.float() - model.mel_mean) / model.mel_std  # (B, T, n_mels)
        frames = fmask.sum()
        mel_l1 = ((pred.float() - target).abs() * fmask[..., None]).sum() / (frames * mel.shape[-1])
        dur_mse = ((log_dur.float() - torch.log1p(durations.float())) ** 2 * pmask).sum() / pmask.sum()
        return mel_l1 + dur_mse, mel_l1, dur_mse, int(frames)

    def loss(self, batch, phase: str = "main"):
        loss, mel_l1, dur_mse, _ = self.terms(batch)
        return loss, {"loss": loss.detach(), "mel_l1": mel_l1.detach(), "dur_mse": dur_mse.detach()}

    def evaluate(self, batches) -> dict[str, float]:
        """val_loss, val_mel_l1 (per normalised band and frame) and val_dur_mse, frame-weighted."""
        totals, frames = {"val_loss": 0.0, "val_mel_l1": 0.0, "val_dur_mse": 0.0}, 0
        for batch in batches:
            loss, mel_l1, dur_mse, n = self.terms(batch)
            for key, value in (("val_loss", loss), ("val_mel_l1", mel_l1), ("val_dur_mse", dur_mse)):
                totals[key] += float(value) * n
            frames += n
        return {k: v / max(frames, 1) for k, v in totals.items()}
