"""Diffusion samplers: DDIM with eta=0 is deterministic and, with a denoiser that knows x0,
recovers it; DDPM reproduces bitwise from a seeded generator; Euler on a straight-line flow
lands on x1; guidance at scale 1 is the conditional prediction; check() runs once per step and
stops sampling by raising; one DDIM step matches diffusers' DDIMScheduler when installed."""
import pytest
import torch

from genforge.objectives.diffusion import cosine_schedule, linear_schedule
from genforge.sample.diffusion import ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, flow_sample, guided

SHAPE = (3, 2, 4, 4)


def knows_x0(x0, schedule, prediction="eps"):
    """A perfect denoiser: it knows the clean image and answers what x_t implies about it."""
    def denoise(x_t, t, cond):
        ab = schedule.alphas_cumprod[t].to(x_t.dtype).reshape(-1, 1, 1, 1)
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return {"eps": eps, "x0": x0.expand_as(x_t).clone(), "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]
    return denoise


def toy(x_t, t, cond):  # a smooth stand-in for a network; cond shifts it
    return 0.5 * torch.tanh(x_t) + 0.01 * t.to(x_t.dtype).reshape(-1, 1, 1, 1) / 100 + (0.0 if cond is None else cond)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_ddim_eta0_is_deterministic():
    s = linear_schedule(1000)
    a = ddim_sample(toy, SHAPE, s, steps=20, generator=seeded(1))
    b = ddim_sample(toy, SHAPE, s, steps=20, generator=seeded(1))
    assert torch.equal(a, b)
    x_T = torch.randn(SHAPE, generator=seeded(2))
    # eta=0 draws nothing after x_T: whatever the generator's state, the same x_T gives the same image
    assert torch.equal(ddim_sample(toy, SHAPE, s, 20, x_T=x_T, generator=seeded(3)),
                       ddim_sample(toy, SHAPE, s, 20, x_T=x_T, generator=seeded(4)))
    assert not torch.equal(ddim_sample(toy, SHAPE, s, 20, eta=1.0, x_T=x_T, generator=seeded(3)),
                           ddim_sample(toy, SHAPE, s, 20, eta=1.0, x_T=x_T, generator=seeded(4)))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("schedule", [linear_schedule(1000), cosine_schedule(1000)], ids=["linear", "cosine"])
def test_ddim_with_a_perfect_denoiser_recovers_x0(prediction, schedule):
    x0 = torch.rand(SHAPE, generator=seeded(5), dtype=torch.float64) * 2 - 1
    for eta in (0.0, 0.7):
        got = ddim_sample(knows_x0(x0, schedule, prediction), SHAPE, schedule, steps=25, eta=eta, prediction=prediction,
                          generator=seeded(6), dtype=torch.float64)
        if prediction == "x0":
            assert torch.equal(got, x0)  # the last step is sqrt(1) x0 + 0 eps
        else:
            torch.testing.assert_close(got, x0, rtol=1e-6, atol=1e-6)


def test_ddpm_reproduces_bitwise_from_a_seed():
    s = linear_schedule(100)
    a = ddpm_sample(toy, SHAPE, s, generator=seeded(7))
    b = ddpm_sample(toy, SHAPE, s, generator=seeded(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, ddpm_sample(toy, SHAPE, s, generator=seeded(8)))
    x0 = torch.rand(SHAPE, generator=seeded(9), dtype=torch.float64)
    got = ddpm_sample(knows_x0(x0, s), SHAPE, s, generator=seeded(7), dtype=torch.float64)
    torch.testing.assert_close(got, x0, rtol=1e-6, atol=1e-6)  # the last step adds no noise


def test_euler_on_a_straight_line_flow_lands_on_x1():
    x0 = torch.randn(SHAPE, generator=seeded(10), dtype=torch.float64)
    x1 = torch.randn(SHAPE, generator=seeded(11), dtype=torch.float64)
    constant = flow_sample(lambda x, t, c: x1 - x0, SHAPE, steps=16, x0=x0)
    torch.testing.assert_close(constant, x1, rtol=0, atol=1e-12)
    toward = flow_sample(lambda x, t, c: (x1 - x) / (1 - t.reshape(-1, 1, 1, 1)), SHAPE, steps=7, x0=x0)
    torch.testing.assert_close(toward, x1, rtol=0, atol=1e-12)
    drawn = flow_sample(lambda x, t, c: x1 - x, SHAPE, steps=5, generator=seeded(12), dtype=torch.float64)
    assert torch.equal(drawn, flow_sample(lambda x, t, c: x1 - x, SHAPE, steps=5, generator=seeded(12),
                                          dtype=torch.float64))


def test_guidance():
    x, t, cond, neg = torch.randn(SHAPE), torch.full((3,), 10), torch.tensor(0.3), torch.tensor(-0.2)
    calls = []

    def denoise(x_t, t, c):
        calls.append(c)
        return toy(x_t, t, c)

    assert torch.equal(guided(denoise, 1.0)(x, t, cond), toy(x, t, cond))
    assert len(calls) == 1  # scale 1 computes no unconditional branch
    torch.testing.assert_close(guided(denoise, 4.0)(x, t, cond), toy(x, t, None) + 4.0 * (toy(x, t, cond) - toy(x, t, None)))
    assert calls[-1] is None
    torch.testing.assert_close(guided(denoise, 4.0, negative=neg)(x, t, cond), toy(x, t, neg) + 4.0 * (toy(x, t, cond) - toy(x, t, neg)))
    assert calls[-1] is neg
    s = linear_schedule(50)
    assert torch.equal(ddim_sample(guided(toy, 1.0), SHAPE, s, 10, cond=cond, generator=seeded(0)),
                       ddim_sample(toy, SHAPE, s, 10, cond=cond, generator=seeded(0)))


class Stop(Exception):
    pass


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "flow"])
def test_check_runs_once_per_step_and_can_stop(sampler):
    s = linear_schedule(30)
    run = {"ddpm": lambda d, c: ddpm_sample(d, SHAPE, s, check=c, generator=seeded(0)),
           "ddim": lambda d, c: ddim_sample(d, SHAPE, s, steps=10, check=c, generator=seeded(0)),
           "flow": lambda d, c: flow_sample(d, SHAPE, steps=12, check=c, generator=seeded(0))}[sampler]
    steps = {"ddpm": 30, "ddim": 10, "flow": 12}[sampler]
    checks, denoised = [], []

    def denoise(x, t, c):
        denoised.append(1)
        return toy(x, t, c)

    run(denoise, lambda: checks.append(1))
    assert len(checks) == steps == len(denoised)

    checks.clear(), denoised.clear()

    def cancel():
        checks.append(1)
        if len(checks) == 4:
            raise Stop("cancelled")

    with pytest.raises(Stop):
        run(denoise, cancel)
    assert len(denoised) == 3


def test_ddim_timesteps_and_bad_steps():
    assert ddim_timesteps(1000, 4) == [750, 500, 250, 0]
    with pytest.raises(ValueError, match="steps=0"):
        ddim_timesteps(1000, 0)


@pytest.mark.parametrize("prediction,diffusers_name", [("eps", "epsilon"), ("v", "v_prediction"), ("x0", "sample")])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_one_ddim_step_matches_diffusers(prediction, diffusers_name, eta):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed")
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                  clip_sample=False, set_alpha_to_one=True, prediction_type=diffusers_name)
    ref.set_timesteps(50)
    assert ref.timesteps.tolist() == ddim_timesteps(1000, 50)
    s = linear_schedule(1000, 1e-4, 0.02)
    for k in (0, 17, 49):  # the first step, one in the middle, the last (to ab = 1)
        t = int(ref.timesteps[k])
        x, out, z = (torch.randn(SHAPE, generator=seeded(20 + i)) for i in range(3))
        want = ref.step(out, t, x, eta=eta, variance_noise=z).prev_sample
        got = ddim_step(x, out, t, t - 20, s, eta=eta, prediction=prediction, noise=z)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
