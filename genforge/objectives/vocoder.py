"""The vocoder objective: the GAN objective's two phases ("d" then "g" on the same batch, G's
forward shared between them), with a vocoder's losses.

Batches are (waveform segments (B, N), the batch's step number (0-d)); the generator reads their
log-mel frames (nn/mel.py) and writes N samples back (N a multiple of the hop).

  G: mel_weight * L1 of log-mels (HiFi-GAN, eq. 2)
     + stft_weight * multi-resolution STFT loss, spectral convergence + log-magnitude L1 at three
       resolutions (Yamamoto et al. 2020, Parallel WaveGAN, eqs. 1-4)
     + fm_weight * feature matching, L1 between D's feature maps of real and fake (HiFi-GAN, eq. 3)
     + adv_weight * adversarial loss summed over the sub-discriminators
  D: the adversarial loss of each sub-discriminator, summed: least squares (HiFi-GAN, Mao et al.
     2017) or hinge (Vocos; objectives/gan.py's d_loss_fn / g_loss_fn).

For the first model.disc_start steps only the spectral losses train G (D's phase is a no-op), which
gets the vocoder to intelligible output before the discriminators start to shape its fine detail.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from genforge.models.vocoder import Vocoder
from genforge.objectives.gan import d_loss_fn, g_loss_fn

STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, win), Parallel WaveGAN's


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=wav.device)
    spec = torch.stft(wav, n_fft, hop, win, window, center=True, return_complex=True)
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-7)  # (B, F, T); the floor keeps sqrt's gradient finite


def multi_resolution_stft_loss(fake: torch.Tensor, real: torch.Tensor, resolutions=STFT_RESOLUTIONS) -> torch.Tensor:
    """Mean over resolutions of spectral convergence ||S - S'||_F / ||S||_F plus mean |log S - log S'|."""
    total = fake.new_zeros(())
    for n_fft, hop, win in resolutions:
        s_fake, s_real = stft_magnitude(fake, n_fft, hop, win), stft_magnitude(real, n_fft, hop, win)
        sc = torch.linalg.norm(s_real - s_fake, dim=(1, 2)) / torch.linalg.norm(s_real, dim=(1, 2)).clamp(min=1e-7)
        total = total + sc.mean() + F.l1_loss(torch.log(s_fake), torch.log(s_real))
    return total / len(resolutions)


def feature_matching(real_outs, fake_outs) -> torch.Tensor:
    """Sum over sub-discriminators and layers of mean |D_l(real) - D_l(fake)| (real detached)."""
    loss = 0.0
    for (_, real_feats), (_, fake_feats) in zip(real_outs, fake_outs):
        for r, f in zip(real_feats, fake_feats):
            loss = loss + (r.detach() - f).abs().mean()
    return loss


def adversarial_d(kind: str, real_outs, fake_outs) -> torch.Tensor:
    loss = 0.0
    for (real, _), (fake, _) in zip(real_outs, fake_outs):
        if kind == "lsgan":
            loss = loss + (1 - real).pow(2).mean() + fake.pow(2).mean()
        else:
            loss = loss + d_loss_fn("hinge", real, fake)
    return loss


def adversarial_g(kind: str, fake_outs) -> torch.Tensor:
    loss = 0.0
    for fake, _ in fake_outs:
        loss = loss + ((1 - fake).pow(2).mean() if kind == "lsgan" else g_loss_fn("hinge", fake))
    return loss


class VocoderObjective:
    ema_module = "g"

    def __init__(self, model: Vocoder):
        self.model, self.g, self.d, self.c = model, model.g, model.d, model.config
        self.phases = ("d", "g") if self.d is not None else ("g",)
        self.lr_scales = {"d": self.c.d_lr_scale}
        self._pending = None  # (the batch's waveform, G's output with its graph) of the last D phase
        self._griffin_lim: dict[int, float] = {}  # Griffin–Lim's MCD per validation clip (it never changes)
        # mcd(ref, test, mel_config) -> dB; the runner passes genforge.eval.audio_metrics.mcd_dtw
        # (eval sits above objectives in the layers); None: evaluate reports no MCD
        self.mcd = None

    def parameters(self, phase: str):
        return (self.d if phase == "d" else self.g).parameters()

    def modules(self) -> dict:
        return {"g": self.g, "d": self.d} if self.d is not None else {"g": self.g}

    def _adversarial(self, step: torch.Tensor) -> bool:
        return self.d is not None and int(step) >= self.c.disc_start

    def loss(self, batch, phase: str):
        wav, step = batch
        wav = wav.float()
        with torch.no_grad():
            mel = self.g.feats(wav)  # (B, n_mels, N / hop + 1)
        if phase == "d":
            if not self._adversarial(step):  # D waits for disc_start: nothing to learn yet
                return torch.zeros((), device=wav.device, requires_grad=True), {}
            fake = self.g(mel)  # its graph is kept for the G phase that follows on this batch
            self._pending = (wav, fake) if torch.is_grad_enabled() else None
            loss = adversarial_d(self.c.loss, self.d(wav), self.d(fake.detach()))
            return loss, {"loss": loss.detach()}
        pending, self._pending = self._pending, None
        fake = pending[1] if pending is not None and pending[0] is wav else self.g(mel)
        mel_l1 = F.l1_loss(self.g.feats(fake), mel)
        loss = self.c.mel_weight * mel_l1
        metrics = {"mel_l1": mel_l1.detach()}
        if self.c.stft_weight:
            stft = multi_resolution_stft_loss(fake, wav)
            loss = loss + self.c.stft_weight * stft
            metrics["stft"] = stft.detach()
        if self._adversarial(step):
            self.d.requires_grad_(False)  # G's step needs no gradients in D
            try:
                fake_outs = self.d(fake)
                with torch.no_grad():
                    real_outs = self.d(wav)
            finally:
                self.d.requires_grad_(True)
            adv, fm = adversarial_g(self.c.loss, fake_outs), feature_matching(real_outs, fake_outs)
            loss = loss + self.c.adv_weight * adv + self.c.fm_weight * fm
            metrics.update(adv=adv.detach(), fm=fm.detach())
        metrics["loss"] = loss.detach()
        return loss, metrics

    def evaluate(self, batches) -> dict[str, float]:
        """On held-out clips: log-mel L1, multi-resolution STFT loss, and MCD-DTW (dB) of the vocoder
        and, beside it, of Griffin–Lim on the same mels."""
        from genforge.nn.mel import griffin_lim

        cfg = self.g.mel_config
        mel_l1, stft, mcd, mcd_gl = [], [], [], []
        for i, (wav, _) in enumerate(batches):
            wav = wav.float()
            mel = self.g.feats(wav)
            fake = self.g(mel)
            mel_l1.append(float(F.l1_loss(self.g.feats(fake), mel)))
            stft.append(float(multi_resolution_stft_loss(fake, wav)))
            for j in range(len(wav) if self.mcd else 0):
                ref = wav[j].cpu().numpy()
                mcd.append(self.mcd(ref, fake[j].clamp(-1, 1).cpu().numpy(), cfg))
                key = i * 10_000 + j
                if key not in self._griffin_lim:
                    self._griffin_lim[key] = self.mcd(ref, griffin_lim(mel[j].cpu(), cfg).numpy(), cfg)
                mcd_gl.append(self._griffin_lim[key])
        values = {"val_mel_l1": _mean(mel_l1), "val_stft": _mean(stft)}
        if mcd:
            values.update(val_mcd_db=_mean(mcd), val_mcd_griffinlim_db=_mean(mcd_gl))
        return values


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)
