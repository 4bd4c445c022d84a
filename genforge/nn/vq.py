"""Vector quantisers: one codebook (VectorQuantizer), and a stack of them on successive residuals
(ResidualVQ), shared by the image tokenizer (models/vqvae.py) and the waveform codec (models/codec.py).

VectorQuantizer (van den Oord et al. 2017, "Neural Discrete Representation Learning"): each vector
of z (B, D, *spatial) is replaced by its nearest codebook entry (squared Euclidean); the gradient
passes straight through (z + sg(z_q - z)). The codebook learns either by its own loss
||sg(z) - e||^2 (ema=False, a Parameter) or as exponential moving averages of the vectors assigned
to each code (ema=True, the paper's appendix A.1; buffers: cluster sizes and embedding sums, saved
with the weights so resume is exact). Codes whose EMA cluster size falls below `dead_threshold` are
restarted from vectors of the current batch (Dhariwal et al. 2020, "Jukebox", sec. 3.1), chosen by
a generator seeded from a step counter buffer, not the global RNG.

ResidualVQ (Zeghidour et al. 2021, "SoundStream", algorithm 1): level i quantises what levels
0..i-1 left over, so the sum of the n_q chosen vectors approximates z ever closer; with quantizer
dropout (SoundStream sec. 3.3) a training batch uses only its first n levels, n drawn per batch,
so that the codes' first levels alone already decode (a bitrate chosen at inference).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _flat(z: torch.Tensor) -> torch.Tensor:
    """(B, D, *spatial) -> (B * prod(spatial), D) float32, channel last."""
    return z.detach().movedim(1, -1).reshape(-1, z.shape[1]).float()


def usage(codes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, fraction of the codebook used) of codes (any shape) from a codebook of `size`:
    the perplexity is exp of the entropy of code use, `size` when all codes are used equally."""
    counts = torch.bincount(codes.reshape(-1), minlength=size).float()
    p = counts / counts.sum()
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, ema: bool = True, decay: float = 0.99,
                 dead_threshold: float = 1.0):
        super().__init__()
        self.codebook_size, self.dim, self.ema = codebook_size, dim, ema
        self.decay, self.dead_threshold = decay, dead_threshold
        K, D = codebook_size, dim
        codebook = torch.empty(K, D).uniform_(-1 / K, 1 / K)  # van den Oord et al.'s init
        if ema:
            self.register_buffer("codebook", codebook)  # (K, D) = embed_sum / cluster_size
            self.register_buffer("cluster_size", torch.ones(K))  # EMA of the number of vectors per code
            self.register_buffer("embed_sum", codebook.clone())  # (K, D) EMA of their sum
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # seeds the dead-code restarts
        else:
            self.codebook = nn.Parameter(codebook)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """The index of the nearest codebook entry of each vector of z (B, D, *spatial): (B, *spatial)."""
        flat = _flat(z)  # (N, D)
        e = self.codebook.detach().float()  # (K, D)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)  # (N, K)
        return dist.argmin(1).view(z.shape[0], *z.shape[2:])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of codes (B, *spatial) as (B, D, *spatial)."""
        return F.embedding(codes, self.codebook).movedim(-1, 1)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(z_q with the straight-through gradient (B, D, *spatial), codes (B, *spatial), stats):
        stats holds `commit` ||z - sg(z_q)||^2 and `codebook` ||sg(z) - z_q||^2, means over elements."""
        codes = self.nearest(z)
        z_q = self.lookup(codes).to(z.dtype)
        stats = {"commit": F.mse_loss(z.float(), z_q.detach().float()),
                 "codebook": F.mse_loss(z_q.float(), z.detach().float())}
        return z + (z_q - z).detach(), codes, stats

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of the codebook towards the mean of the vectors of z (B, D, *spatial)
        assigned to each code (van den Oord et al., eqs. 6-8, with Laplace smoothing of the cluster
        sizes as in Sonnet's VectorQuantizerEMA), then restart dead codes from z."""
        flat = _flat(z)  # (N, D)
        onehot = F.one_hot(codes.reshape(-1), self.codebook_size).float()  # (N, K)
        with torch.autocast(flat.device.type, enabled=False):  # float32 sums, whatever the loop's precision
            self._ema_step(flat, onehot)
        self.restart_dead(flat)
        self.steps.add_(1)

    def _ema_step(self, flat: torch.Tensor, onehot: torch.Tensor) -> None:
        K, d = self.codebook_size, self.decay
        self.cluster_size.mul_(d).add_(onehot.sum(0), alpha=1 - d)
        self.embed_sum.mul_(d).add_(onehot.t() @ flat, alpha=1 - d)
        n, eps = self.cluster_size.sum(), 1e-5
        size = (self.cluster_size + eps) / (n + K * eps) * n  # never zero
        self.codebook.copy_(self.embed_sum / size[:, None])

    @torch.no_grad()
    def seed_from(self, z: torch.Tensor) -> None:
        """Set the codebook to distinct vectors of z (B, D, *spatial) drawn at random (repeated only
        when z has fewer vectors than codes), each with cluster size 1: a data-dependent start, as
        EnCodec's k-means initialisation, without its iterations."""
        flat = _flat(z)
        gen = torch.Generator().manual_seed(int(self.steps))
        pick = torch.randperm(len(flat), generator=gen)
        pick = pick.repeat(-(-self.codebook_size // len(flat)))[:self.codebook_size].to(flat.device)
        self.codebook.copy_(flat[pick])
        if self.ema:
            self.cluster_size.fill_(1.0)
            self.embed_sum.copy_(self.codebook)

    @torch.no_grad()
    def seed_spread(self, z: torch.Tensor) -> None:
        """Set the codebook by k-means++ seeding (Arthur & Vassilvitskii 2007) on the vectors of z
        (B, D, *spatial): each entry drawn with probability proportional to its squared distance
        from the entries already chosen, by a generator of fixed seed, so a run starts the same from
        the same batch; each with cluster size 1. Where one vector fills most of z (black, in a
        scene's patch colours) it is one entry, not most of them (as seed_from's uniform draw would make it)."""
        flat = _flat(z)
        gen = torch.Generator().manual_seed(0)
        chosen = flat[torch.randint(len(flat), (1,), generator=gen)]
        for _ in range(1, self.codebook_size):
            d = torch.cdist(flat, chosen).min(1).values.pow(2)  # (N,)
            pick = torch.multinomial(d / d.sum(), 1, generator=gen) if d.sum() > 0 else torch.randint(len(flat), (1,), generator=gen)
            chosen = torch.cat([chosen, flat[pick]])
        self.codebook.copy_(chosen)
        if self.ema:
            self.cluster_size.fill_(1.0)
            self.embed_sum.copy_(chosen)

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor) -> torch.Tensor:
        """Move codes whose EMA cluster size is below dead_threshold onto vectors drawn from flat
        (N, D), with cluster size dead_threshold; returns the restarted codes' indices."""
        dead = (self.cluster_size < self.dead_threshold).nonzero().squeeze(1)
        if len(dead):
            gen = torch.Generator().manual_seed(int(self.steps))
            pick = torch.randint(len(flat), (len(dead),), generator=gen).to(flat.device)
            self.codebook[dead] = flat[pick]
            self.cluster_size[dead] = self.dead_threshold
            self.embed_sum[dead] = flat[pick] * self.dead_threshold
        return dead


class ResidualVQ(nn.Module):
    """n_q VectorQuantizers (`levels`), level i quantising the residual of levels 0..i-1."""

    def __init__(self, n_q: int, codebook_size: int, dim: int, ema: bool = True, decay: float = 0.99,
                 dead_threshold: float = 1.0, seed_codebooks: bool = False):
        super().__init__()
        self.n_q, self.codebook_size, self.dim, self.seed_codebooks = n_q, codebook_size, dim, seed_codebooks
        self.levels = nn.ModuleList(VectorQuantizer(codebook_size, dim, ema, decay, dead_threshold) for _ in range(n_q))

    def encode(self, z: torch.Tensor, n: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(codes (B, n, *spatial) of the first n levels (all: None), the residual each level
        quantised, [(B, D, *spatial)] * n, detached)."""
        residual, codes, inputs = z.detach().float(), [], []
        for vq in self.levels[:n or self.n_q]:
            c = vq.nearest(residual)
            inputs.append(residual)
            codes.append(c)
            residual = residual - vq.lookup(c).float()
        return torch.stack(codes, 1), inputs

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """The sum of the codebook vectors of codes (B, n, *spatial) (n <= n_q levels): (B, D, *spatial)."""
        if codes.shape[1] > self.n_q:
            raise ValueError(f"codes have {codes.shape[1]} levels; this quantiser has {self.n_q}")
        return sum(vq.lookup(codes[:, i]) for i, vq in enumerate(self.levels[:codes.shape[1]]))

    def quantize(self, z: torch.Tensor, n: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor]]:
        """(z_q of the first n levels with the straight-through gradient (B, D, *spatial), codes
        (B, n, *spatial), stats, each level's input residual (for `update`)). stats: `commit`, the
        sum over levels of ||r_i - sg(q_i)||^2 with r_i level i's residual input, carrying the
        gradient to z (EnCodec's commitment loss); `codebook`, ||sg(r_i) - q_i||^2 summed (trains
        non-EMA codebooks); `residual_i`, the mean square of what is left after level i."""
        codes, inputs = self.encode(z, n)
        stats, z_q, commit, book = {}, torch.zeros_like(z), z.new_zeros(()).float(), z.new_zeros(()).float()
        for i, vq in enumerate(self.levels[:codes.shape[1]]):
            q = vq.lookup(codes[:, i]).to(z.dtype)
            r = z - z_q.detach()  # level i's input, with z's gradient
            commit = commit + F.mse_loss(r.float(), q.detach().float())
            book = book + F.mse_loss(q.float(), r.detach().float())
            z_q = z_q + q
            stats[f"residual_{i}"] = (z.detach() - z_q.detach()).float().pow(2).mean()
        stats.update(commit=commit, codebook=book)
        return z + (z_q - z).detach(), codes, stats, inputs

    @torch.no_grad()
    def update(self, inputs: list[torch.Tensor], codes: torch.Tensor) -> None:
        """One EMA step (and dead-code restart) of each level used, towards its residual inputs.
        With seed_codebooks, a level's first update instead sets its codebook to its inputs
        (`VectorQuantizer.seed_from`): codes start where the data is rather than near zero."""
        for i, r in enumerate(inputs):
            vq = self.levels[i]
            if self.seed_codebooks and int(vq.steps) == 0:
                vq.seed_from(r)
                vq.steps.add_(1)
            else:
                vq.update(r, codes[:, i])
