"""The codec objective: reconstruct waveforms through the residual-quantised codes, and predict each
sample's mu-law level from the decoder and the past samples.

Batches are (waveform segments (B, N), the batch's step number (0-d)); N is a multiple of the hop.

  loss = l1_weight * |x - x'| / |x|  (waveform L1 relative to the batch's mean amplitude: quiet
         recordings weigh as much as loud ones, and the magnitude-only spectral terms below cannot
         fix the phase that the per-sample head needs)
       + stft_weight * multi-resolution STFT loss (Yamamoto et al. 2020; objectives/vocoder.py; the
         resolutions whose window fits the segment)
       + mel_weight * |log-mel(x) - log-mel(x')|  (HiFi-GAN's mel loss)
       + beta * sum over levels of ||r_i - sg(q_i)||^2  (commitment; the codebooks move by EMA)
       + ce_weight * the per-sample head's cross-entropy (nats), on model.head_positions samples of
         each segment drawn from the batch's step (teacher forcing: every position is independent
         given its inputs, so a subset is an unbiased estimate at a fraction of the cost)

With model.quantizer_dropout the batch uses its first n ~ U{1..n_q} levels, n drawn from the
batch's step (randomness travels with the batch: exact resume). The EMA codebook update runs in
`loss`, in training mode, without autograd.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genforge.models.codec import Codec
from genforge.nn.mel import MEL_PRESETS, LogMel, MelConfig
from genforge.nn.mulaw import mu_law_encode
from genforge.nn.vq import usage
from genforge.objectives.vocoder import STFT_RESOLUTIONS, multi_resolution_stft_loss

LN2 = math.log(2)


def mel_config(sample_rate: int) -> MelConfig:
    """The shipped mel settings of sample_rate, or 80 bands up to Nyquist."""
    return MEL_PRESETS.get(sample_rate) or MelConfig(sample_rate=sample_rate, fmax=sample_rate / 2)


def code_bits(model: Codec) -> float:
    """Bits per sample the codes take at most (log2(codebook_size) * n_q per frame): the bound until
    a language model over the codes measures them."""
    return math.log2(model.codebook_size) * model.n_q / model.hop


class CodecObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = False  # the EMA codebook update sees each batch once: no sharding of a batch

    def __init__(self, model: Codec):
        self.model, self.c = model, model.config
        self.logmel = LogMel(mel_config(model.sample_rate))

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def loss(self, batch, phase: str = "main"):
        wav, step = batch
        wav = wav.float()
        gen = torch.Generator().manual_seed(int(step) * 7919 + 17)
        n_q = int(torch.randint(1, self.c.n_q + 1, (), generator=gen)) if self.c.quantizer_dropout else None
        out = self.model(wav, n_q)
        fake = out["wav"]
        l1 = F.l1_loss(fake, wav) / wav.abs().mean().clamp(min=1e-4)
        fits = [r for r in STFT_RESOLUTIONS if r[0] // 2 < wav.shape[1]] or [(64, 16, 64)]  # short test segments
        stft = multi_resolution_stft_loss(fake, wav, fits)
        logmel = self.logmel.to(wav.device)
        mel = F.l1_loss(logmel(fake), logmel(wav))
        B, N = wav.shape
        P = min(self.c.head_positions or N, N)
        positions = torch.stack([torch.randperm(N, generator=gen)[:P] for _ in range(B)]).to(wav.device)
        levels = mu_law_encode(wav)
        logits = self.model.head_logits(fake, out["feats"], levels, positions)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), torch.gather(levels, 1, positions).reshape(-1))
        c = self.c
        loss = (c.l1_weight * l1 + c.stft_weight * stft + c.mel_weight * mel + c.beta * out["stats"]["commit"]
                + c.ce_weight * ce)
        if self.model.training and torch.is_grad_enabled():
            self.model.quantizer.update(out["inputs"], out["codes"])
        metrics = {"loss": loss.detach(), "l1": l1.detach(), "stft": stft.detach(), "mel_l1": mel.detach(),
                   "commit": out["stats"]["commit"].detach(), "head_bits": ce.detach() / LN2}
        for i in range(out["codes"].shape[1]):
            metrics[f"perplexity_{i}"] = usage(out["codes"][:, i], c.codebook_size)[0]
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        """Reconstruction, bits per sample and codebook usage on held-out clips (`measure`)."""
        return {f"val_{k}": v for k, v in measure(self.model, [wav for wav, _ in batches], self.logmel).items()}


@torch.no_grad()
def measure(model: Codec, clips: list[torch.Tensor], logmel: LogMel | None = None) -> dict[str, float]:
    """On clips [(1, N) or (N,)], N a multiple of the hop: `mel_l1` (mean |log-mel difference|) and
    `snr_db` (10 log10 of signal over error energy, all clips pooled) of the decoder's waveform,
    `head_bits` (bits per sample of the per-sample head given the codes), `code_bits` (the codes'
    bound), `bits_per_sample` (their sum), and per level i `used_i` (the fraction of the codebook
    the clips use) and `perplexity_i`."""
    logmel = (logmel or LogMel(mel_config(model.sample_rate))).to(model.decoder.out.weight.device)
    mel, signal, error, bits, samples, codes = 0.0, 0.0, 0.0, 0.0, 0, []
    for wav in clips:
        wav = model.check_wav(wav.reshape(1, -1))
        c = model.encode(wav)
        fake = model.decode(c)
        mel += float(F.l1_loss(logmel(fake), logmel(wav))) * wav.shape[1]
        signal += float(wav.double().pow(2).sum())
        error += float((wav - fake).double().pow(2).sum())
        bits += float(model.sample_bits(wav, c).sum())
        samples += wav.shape[1]
        codes.append(c[0])
    if not samples:
        return {}
    head = bits / samples
    values = {"mel_l1": mel / samples, "snr_db": 10 * math.log10(max(signal, 1e-12) / max(error, 1e-12)),
              "head_bits": head, "code_bits": code_bits(model), "bits_per_sample": head + code_bits(model)}
    every = torch.cat(codes, 1)  # (n_q, frames of all clips)
    for i in range(every.shape[0]):
        perplexity, used = usage(every[i], model.codebook_size)
        values.update({f"used_{i}": float(used), f"perplexity_{i}": float(perplexity)})
    return values
