"""Diffusion math: the linear and cosine schedules against their closed forms (and diffusers'
alphas_cumprod when it is installed), q_sample's mean and variance, the eps/x0/v targets and
their inverse, and rectified flow's line and velocity."""
import math

import pytest
import torch

from genforge.objectives.diffusion import (
    cosine_schedule,
    flow_interpolant,
    flow_target,
    from_betas,
    linear_schedule,
    q_sample,
    target,
    to_x0_eps,
)


def test_linear_schedule_equals_the_product_by_hand():
    s = linear_schedule(1000, 1e-4, 0.02)
    assert s.betas.dtype == torch.float64 and s.betas.shape == (1000,)
    assert s.betas[0].item() == pytest.approx(1e-4, abs=1e-18) and s.betas[-1].item() == pytest.approx(0.02, abs=1e-18)
    prod = 1.0
    for i in range(1000):
        beta = 1e-4 + (0.02 - 1e-4) * i / 999
        prod *= 1.0 - beta
        assert s.alphas_cumprod[i].item() == pytest.approx(prod, rel=1e-12)
    torch.testing.assert_close(s.alphas, 1 - s.betas, rtol=0, atol=0)


def test_cosine_schedule_matches_nichol_dhariwal():
    T, eps = 1000, 0.008
    s = cosine_schedule(T, eps)
    f = lambda t: math.cos((t / T + eps) / (1 + eps) * math.pi / 2) ** 2  # noqa: E731
    clipped = s.betas >= 0.999
    assert clipped.sum() <= 2 and not clipped[: T - 2].any()  # only at the very end
    for t in range(T - 2):
        assert s.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-10)
        assert s.betas[t].item() == pytest.approx(1 - f(t + 1) / f(t), rel=1e-10)


def test_bad_betas_raise():
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        from_betas(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="num_steps"):
        linear_schedule(0)


@pytest.mark.parametrize("schedule", [linear_schedule(100), cosine_schedule(100)])
def test_q_sample_mean_and_variance(schedule):
    g = torch.Generator().manual_seed(0)
    n, t_idx = 200_000, 60
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    t = torch.full((n,), t_idx)
    noise = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x_t = q_sample(x0, t, noise, schedule)
    ab = schedule.alphas_cumprod[t_idx].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=5e-3)
    assert x_t.var().item() == pytest.approx(1 - ab, rel=1e-2)
    # and exactly its formula, row by row with different t
    x0, noise, t = torch.randn(4, 3, 2, 2, dtype=torch.float64), torch.randn(4, 3, 2, 2, dtype=torch.float64), torch.tensor([0, 5, 50, 99])
    ab = schedule.alphas_cumprod[t].reshape(4, 1, 1, 1)
    torch.testing.assert_close(q_sample(x0, t, noise, schedule), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_and_their_inverse(prediction):
    s = cosine_schedule(100)
    x0, noise = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64)
    t = torch.tensor([1, 40, 98])
    x_t = q_sample(x0, t, noise, s)
    got_x0, got_eps = to_x0_eps(target(x0, noise, t, s, prediction), x_t, t, s, prediction)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, noise)
    if prediction == "v":  # Salimans & Ho: v = sqrt(ab) eps - sqrt(1 - ab) x0
        ab = s.alphas_cumprod[t].reshape(3, 1, 1, 1)
        torch.testing.assert_close(target(x0, noise, t, s, "v"), ab.sqrt() * noise - (1 - ab).sqrt() * x0)


def test_unknown_prediction_raises():
    s, x = linear_schedule(10), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="'score'"):
        target(x, x, torch.tensor([0]), s, "score")
    with pytest.raises(ValueError, match="'score'"):
        to_x0_eps(x, x, torch.tensor([0]), s, "score")


def test_flow_line_and_velocity():
    x0, x1 = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    assert torch.equal(flow_interpolant(x0, x1, torch.zeros(3)), x0)
    assert torch.equal(flow_interpolant(x0, x1, torch.ones(3)), x1)
    t, h = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), 1e-6
    numeric = (flow_interpolant(x0, x1, t + h) - flow_interpolant(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(numeric, flow_target(x0, x1))


def test_linear_alphas_cumprod_matches_diffusers():
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed")
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                  beta_schedule="linear").alphas_cumprod  # float32
    torch.testing.assert_close(linear_schedule(1000, 1e-4, 0.02).alphas_cumprod.float(), ref, rtol=1e-5, atol=1e-7)


def test_cosine_betas_match_diffusers():
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed")
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").betas  # float32
    torch.testing.assert_close(cosine_schedule(1000).betas.float(), ref, rtol=1e-5, atol=1e-7)
