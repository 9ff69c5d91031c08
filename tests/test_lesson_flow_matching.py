"""aicourse.lessons.flow_matching (notebook 35) against diffusers' FlowMatchEulerDiscreteScheduler (path, schedule,
Euler step and whole sampling loop), torch autograd (the mixture velocity by Tweedie's formula) and scipy."""

import numpy as np
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy

from aicourse.lessons.flow_matching import (conditional_velocity, energy_distance, euler_sample, euler_step,
                                            flow_sigmas, interpolate, mixture_velocity, mode_coverage,
                                            shift_sigmas)

diffusers = pytest.importorskip("diffusers")
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402

TOL = 1e-10
F32 = 1e-6  # diffusers keeps its sigmas in float32 and its step upcasts the sample to float32


def rel(ours, ref):
    a = np.asarray(ours, dtype=np.float64)
    b = ref.detach().numpy().astype(np.float64) if isinstance(ref, torch.Tensor) else np.asarray(ref, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return np.max(np.abs(a - b)) / max(1e-8, np.abs(a).max() + np.abs(b).max())


MEANS = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)
STDS, WEIGHTS = np.full(8, 0.15), np.full(8, 1 / 8)


def gm_u(x, sigma):
    return mixture_velocity(x, sigma, MEANS, STDS, WEIGHTS)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_flow_sigmas_equal_set_timesteps(shift, n):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(n)
    sigmas, timesteps = flow_sigmas(n, shift)
    assert rel(sigmas, sched.sigmas) < F32 and rel(timesteps, sched.timesteps) < F32
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and np.all(np.diff(sigmas) < 0)


def test_shift_fixes_the_ends_and_moves_toward_noise():
    s = np.linspace(0.05, 0.95, 7)
    assert shift_sigmas(0.0, 3.0) == 0.0 and shift_sigmas(1.0, 3.0) == 1.0
    assert np.all(shift_sigmas(s, 3.0) > s) and np.allclose(shift_sigmas(s, 1.0), s)


def test_interpolate_equals_scale_noise():
    rng = np.random.default_rng(0)
    x0, noise = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    sched = FlowMatchEulerDiscreteScheduler(shift=2.0)
    sched.set_timesteps(10)
    idx = np.array([0, 2, 9, 4, 6])
    sig = sched.sigmas.numpy().astype(np.float64)[idx][:, None]
    ref = sched.scale_noise(torch.tensor(x0), sched.timesteps[idx], torch.tensor(noise))
    assert rel(interpolate(x0, noise, sig), ref) < TOL


def test_conditional_velocity_is_the_path_derivative_and_one_step_stays_on_it():
    rng = np.random.default_rng(1)
    x0, noise = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    h = 1e-6
    fd = (interpolate(x0, noise, 0.3 + h) - interpolate(x0, noise, 0.3 - h)) / (2 * h)
    assert rel(conditional_velocity(x0, noise), fd) < 1e-8
    assert rel(euler_step(interpolate(x0, noise, 0.7), conditional_velocity(x0, noise), 0.7, 0.2),
               interpolate(x0, noise, 0.2)) < TOL


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_step_and_whole_trajectory_equal_diffusers(shift):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 2))
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(12)
    xt, ref = torch.tensor(x), [x]
    for i, t in enumerate(sched.timesteps):
        v = gm_u(xt.numpy(), float(sched.sigmas[i]))
        xt = sched.step(torch.tensor(v), t, xt).prev_sample
        ref.append(xt.numpy())
    ours = euler_sample(gm_u, x, flow_sigmas(12, shift)[0])
    assert ours.shape == (13, 100, 2)
    assert rel(ours, np.stack(ref)) < F32
    v = rng.standard_normal((100, 2))
    sig = sched.sigmas.numpy().astype(np.float64)
    sched._step_index = None
    one = sched.step(torch.tensor(v), sched.timesteps[3], torch.tensor(x)).prev_sample
    assert rel(euler_step(x, v, sig[3], sig[4]), one) < F32


def tweedie(x, sigma, means, stds, weights):
    a = 1.0 - sigma
    xt = torch.tensor(x, requires_grad=True)
    mu, s, w = torch.tensor(means), torch.tensor(stds), torch.tensor(weights)
    var = a ** 2 * s ** 2 + sigma ** 2
    logp = torch.logsumexp(torch.log(w) - 0.5 * ((xt[:, None, :] - a * mu) ** 2).sum(-1) / var
                           - 0.5 * x.shape[1] * torch.log(2 * torch.pi * var), dim=1)
    (score,) = torch.autograd.grad(logp.sum(), xt)
    return -sigma * score - (xt.detach() + sigma ** 2 * score) / a


@pytest.mark.parametrize("sigma", [0.02, 0.3, 0.8, 0.99])
def test_mixture_velocity_equals_tweedie(sigma):
    x = np.random.default_rng(3).standard_normal((40, 2)) * 1.5
    assert rel(gm_u(x, sigma), tweedie(x, sigma, MEANS, STDS, WEIGHTS)) < 1e-9
    pts, w = np.array([[-1.0, 0.5], [0.4, 0.0], [1.2, -1.0]]), np.array([0.5, 0.2, 0.3])
    assert rel(mixture_velocity(x, sigma, pts, np.zeros(3), w), tweedie(x, sigma, pts, np.full(3, 1e-9), w)) < 1e-9


def test_mixture_velocity_at_sigma_one_points_from_the_mean():
    x = np.random.default_rng(4).standard_normal((10, 2))
    assert rel(gm_u(x, 1.0), x - MEANS.mean(axis=0)) < TOL


def test_mode_coverage_and_energy_distance():
    x = np.array([[2.0, 0.1], [0.0, -1.9], [5.0, 5.0], [2.1, 0.0]])
    frac, per = mode_coverage(x, MEANS, 0.45)
    assert frac == 0.75 and per.tolist() == [2, 0, 0, 0, 0, 0, 1, 0]
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((30, 1)), 1 + rng.standard_normal((20, 1))
    assert rel(energy_distance(a, b), scipy_energy(a[:, 0], b[:, 0]) ** 2) < TOL
    assert abs(energy_distance(a, a)) < 1e-14
