"""aicourse.lessons.diffusion (notebook 34) against diffusers' schedulers: the forward process against add_noise,
the posterior against Gaussian conditioning, the DDPM step and whole trajectories against DDPMScheduler.step
(three prediction types, two variances, the same noise), the DDIM grid and step against DDIMScheduler."""

import numpy as np
import pytest
import torch

from aicourse.lessons.diffusion import (alpha_bar, ddim_step, ddim_timesteps, ddpm_sample, ddpm_step,
                                        noising_recursion, posterior, predict_eps, predict_x0, q_sample)

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

T = 100
OPTS = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False,
            thresholding=False, timestep_spacing="trailing")
TYPES = ("epsilon", "sample", "v_prediction")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second torch thread makes each step many times slower on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def f64(s):
    """alpha_bar in float64 from the scheduler's own float32 betas (diffusers keeps it in float32)."""
    s.alphas_cumprod = torch.cumprod(1 - s.betas.double(), dim=0)
    return s


def ddpm(**kw):
    return f64(DDPMScheduler(**{**OPTS, "prediction_type": "epsilon", "variance_type": "fixed_small", **kw}))


def ddim(**kw):
    return f64(DDIMScheduler(**{**OPTS, "prediction_type": "epsilon", "set_alpha_to_one": True, "steps_offset": 0,
                                **kw}))


@pytest.fixture(scope="module")
def abar():
    return alpha_bar(DDPMScheduler(**OPTS).betas.double().numpy())


def close(a, b, tol=1e-10):
    a, b = np.asarray(a, dtype=np.float64), torch.as_tensor(b).double().numpy()
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= tol * max(1e-8, np.max(np.abs(a)) + np.max(np.abs(b)))


def test_alpha_bar_and_recursion(abar):
    betas = DDPMScheduler(**OPTS).betas.double().numpy()
    close(abar, torch.cumprod(1 - torch.as_tensor(betas), 0))
    coef, var = noising_recursion(betas)
    close(coef, np.sqrt(abar))
    close(var, 1 - abar)


def test_q_sample_is_add_noise(abar):
    rng = np.random.default_rng(0)
    x0, eps, ks = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), np.array([0, 7, 50, 99])
    ref = ddpm().add_noise(torch.as_tensor(x0), torch.as_tensor(eps), torch.as_tensor(ks))
    close(q_sample(x0, eps, abar[ks]), ref)
    close(q_sample(x0, eps, abar[50]), np.sqrt(abar[50]) * x0 + np.sqrt(1 - abar[50]) * eps)


def test_posterior_is_gaussian_conditioning(abar):
    a_t, a_p = abar[1:], abar[:-1]
    c0, ct, var = posterior(a_t, a_p)
    slope = np.sqrt(a_t / a_p) * (1 - a_p) / (1 - a_t)
    close(ct, slope)
    close(c0, np.sqrt(a_p) - slope * np.sqrt(a_t))
    close(var, (1 - a_p) - slope ** 2 * (1 - a_t), 1e-9)


@pytest.mark.parametrize("pt", TYPES)
@pytest.mark.parametrize("vt", ("fixed_small", "fixed_large"))
def test_ddpm_step_is_diffusers(abar, pt, vt):
    rng = np.random.default_rng(1)
    x, out = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    s = ddpm(prediction_type=pt, variance_type=vt)
    for k in (99, 40, 1, 0):
        z = torch.randn((3, 4), generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        ours, x0 = ddpm_step(out, x, abar[k], abar[k - 1] if k else 1.0, z.numpy() if k else None, pt, vt)
        ref = s.step(torch.as_tensor(out), k, torch.as_tensor(x), generator=torch.Generator().manual_seed(k))
        close(ours, ref.prev_sample)
        close(x0, ref.pred_original_sample)


def test_ddpm_sample_is_diffusers_trajectory(abar):
    rng = np.random.default_rng(2)
    M, x_T = rng.standard_normal((2, 2)), rng.standard_normal((5, 2))
    g = torch.Generator().manual_seed(0)
    noises = [torch.randn((5, 2), generator=g, dtype=torch.float64).numpy() for _ in range(T - 1)]
    ours = ddpm_sample(lambda x, k: np.tanh(x @ M + k / T), x_T, abar, noises)
    s, x, g, ref = ddpm(), torch.as_tensor(x_T), torch.Generator().manual_seed(0), [torch.as_tensor(x_T)]
    for k in s.timesteps:
        x = s.step(torch.tanh(x @ torch.as_tensor(M) + int(k) / T), k, x, generator=g).prev_sample
        ref.append(x)
    close(ours, torch.stack(ref))
    # strided: 10 of the 100 timesteps, the same grid as set_timesteps with trailing spacing
    s = ddpm()
    s.set_timesteps(10)
    grid = ddim_timesteps(T, 10)
    close(grid, s.timesteps)
    ours = ddpm_sample(lambda x, k: np.tanh(x @ M + k / T), x_T, abar, noises[:9], timesteps=grid)
    x, g, ref = torch.as_tensor(x_T), torch.Generator().manual_seed(0), [torch.as_tensor(x_T)]
    for k in s.timesteps:
        x = s.step(torch.tanh(x @ torch.as_tensor(M) + int(k) / T), k, x, generator=g).prev_sample
        ref.append(x)
    close(ours, torch.stack(ref))


@pytest.mark.parametrize("pt", TYPES)
def test_ddim_step_is_diffusers(abar, pt):
    rng = np.random.default_rng(3)
    x, out = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    s = ddim(prediction_type=pt)
    s.set_timesteps(20)
    grid = ddim_timesteps(T, 20)
    close(grid, s.timesteps)
    for eta in (0.0, 0.3, 1.0):
        for i in (0, 9, 19):
            z = rng.standard_normal((3, 4))
            a_prev = abar[grid[i + 1]] if i + 1 < len(grid) else 1.0
            ours, x0 = ddim_step(out, x, abar[grid[i]], a_prev, eta, z, pt)
            ref = s.step(torch.as_tensor(out), int(grid[i]), torch.as_tensor(x), eta=eta,
                         variance_noise=torch.as_tensor(z) if eta > 0 else None)
            close(ours, ref.prev_sample)
            close(x0, ref.pred_original_sample)


def test_predictions_are_consistent(abar):
    rng = np.random.default_rng(4)
    x0, eps = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    a = abar[60]
    x_t = q_sample(x0, eps, a)
    v = np.sqrt(a) * eps - np.sqrt(1 - a) * x0
    for pt, out in (("epsilon", eps), ("sample", x0), ("v_prediction", v)):
        close(predict_x0(out, x_t, a, pt), x0, 1e-12)
        close(predict_eps(out, x_t, a, pt), eps, 1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError):
        ddim_timesteps(1000, 30)
    with pytest.raises(ValueError):
        predict_x0(np.zeros(2), np.zeros(2), 0.5, "score")
    with pytest.raises(ValueError):
        ddpm_step(np.zeros(2), np.zeros(2), 0.5, 0.6, None, "epsilon", "learned")
