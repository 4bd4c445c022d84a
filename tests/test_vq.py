"""nn/vq.py: the residual quantiser's levels each quantise what the ones before left (residuals
shrink level by level, decode sums the levels' vectors), the straight-through gradient and the
commitment loss reach the input, each level's EMA update moves towards its own residuals, and usage
statistics."""
import itertools

import torch

from genforge.nn.vq import ResidualVQ, VectorQuantizer, usage


def fitted(n_q=4, K=16, D=3) -> tuple[ResidualVQ, torch.Tensor]:
    """A residual quantiser whose levels were trained by EMA on z (B, D, T) until they settle."""
    torch.manual_seed(0)
    rvq = ResidualVQ(n_q, K, D, decay=0.8, dead_threshold=0.5)
    z = torch.randn(8, D, 64)
    for _ in range(30):
        _, codes, _, inputs = rvq.quantize(z)
        rvq.update(inputs, codes)
    return rvq, z


def test_residuals_shrink_level_by_level_and_decode_sums_the_levels():
    rvq, z = fitted()
    z_q, codes, stats, inputs = rvq.quantize(z)
    assert codes.shape == (8, 4, 64) and codes.dtype == torch.long
    left = [float(stats[f"residual_{i}"]) for i in range(4)]
    assert all(b < a for a, b in itertools.pairwise(left)), left
    assert left[-1] < 0.25 * float(z.pow(2).mean()), left
    assert torch.allclose(rvq.decode(codes), z_q)
    assert torch.allclose(rvq.decode(codes[:, :2]), rvq.levels[0].lookup(codes[:, 0]) + rvq.levels[1].lookup(codes[:, 1]))
    # level i's input is what levels 0..i-1 left over, and its codes are its nearest entries
    for i in range(1, 4):
        assert torch.allclose(inputs[i], inputs[i - 1] - rvq.levels[i - 1].lookup(codes[:, i - 1]), atol=1e-6)
        assert torch.equal(codes[:, i], rvq.levels[i].nearest(inputs[i]))
    assert torch.equal(rvq.encode(z)[0], codes)


def test_fewer_levels_quantise_coarser_and_keep_the_first_codes():
    rvq, z = fitted()
    full, few = rvq.quantize(z), rvq.quantize(z, 2)
    assert few[1].shape == (8, 2, 64) and torch.equal(few[1], full[1][:, :2])
    err = lambda zq: float((z - zq).pow(2).mean())  # noqa: E731
    assert err(full[0]) < err(few[0])


def test_the_gradient_passes_straight_through_and_commitment_reaches_the_input():
    rvq, _ = fitted()
    z = torch.randn(2, 3, 5, requires_grad=True)
    z_q, _, stats, _ = rvq.quantize(z)
    (z_q * torch.arange(5.0)).sum().backward()
    assert torch.equal(z.grad, torch.arange(5.0).expand(2, 3, 5))  # identity through the quantiser
    z.grad = None
    stats["commit"].backward()
    assert z.grad.abs().sum() > 0


def test_each_level_moves_towards_its_own_residuals():
    torch.manual_seed(0)
    rvq = ResidualVQ(2, 2, 1, decay=0.5, dead_threshold=0.0)
    with torch.no_grad():
        for vq in rvq.levels:
            vq.codebook.copy_(torch.tensor([[-1.0], [1.0]]))
            vq.embed_sum.copy_(vq.codebook)
    z = torch.tensor([3.0, -3.0]).view(2, 1, 1)  # level 0: codes 1, 0; residuals 2, -2; level 1: codes 1, 0
    _, codes, _, inputs = rvq.quantize(z)
    assert codes[:, :, 0].tolist() == [[1, 1], [0, 0]]
    rvq.update(inputs, codes)
    # each code saw one vector: cluster size 0.5 + 0.5, sum 0.5 * (+-1) + 0.5 * value
    assert torch.allclose(rvq.levels[0].embed_sum.squeeze(1), torch.tensor([-2.0, 2.0]))
    assert torch.allclose(rvq.levels[1].embed_sum.squeeze(1), torch.tensor([-1.5, 1.5]))
    assert all(int(vq.steps) == 1 for vq in rvq.levels)


def test_a_vector_quantizer_on_any_spatial_shape_and_usage():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, ema=False)
    assert isinstance(vq.codebook, torch.nn.Parameter)
    z = torch.randn(2, 2, 3, 5)
    codes = vq.nearest(z)
    assert codes.shape == (2, 3, 5) and vq.lookup(codes).shape == (2, 2, 3, 5)
    perplexity, used = usage(torch.tensor([0, 0, 1, 1]), 4)
    assert float(perplexity) == 2.0 and float(used) == 0.5


def test_seeded_codebooks_start_on_their_levels_inputs():
    torch.manual_seed(0)
    rvq = ResidualVQ(2, 8, 2, seed_codebooks=True)
    z = torch.randn(2, 2, 10) * 5
    _, codes, _, inputs = rvq.quantize(z)
    rvq.update(inputs, codes)
    for vq, r in zip(rvq.levels, inputs, strict=True):
        flat = r.movedim(1, -1).reshape(-1, 2)
        assert all(any(torch.equal(e, v) for v in flat) for e in vq.codebook)  # each entry is an input vector
        assert len(vq.codebook.unique(dim=0)) == 8 and torch.equal(vq.embed_sum, vq.codebook)
    assert int(rvq.levels[0].steps) == 1
    _, codes, _, inputs = rvq.quantize(z)
    rvq.update(inputs, codes)  # later updates are EMA steps
    assert int(rvq.levels[0].steps) == 2 and float(rvq.levels[0].cluster_size.sum()) != 8.0
