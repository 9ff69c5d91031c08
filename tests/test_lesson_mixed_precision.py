"""Unit tests for aicourse.lessons.mixed_precision (notebook 31) against torch."""

import numpy as np
import pytest
import torch

from aicourse.lessons.mixed_precision import (FORMATS, DynamicLossScaler, float16_bits_to_float32,
                                              float32_to_bfloat16_bits, float32_to_float16_bits, format_limits,
                                              round_to_bfloat16, round_to_float16)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _values(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    random_bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    spread = (rng.standard_normal(n) * np.exp2(rng.uniform(-28, 17, n))).astype(np.float32)
    ties = np.array([1 + 2.0**-11, 1 + 3 * 2.0**-11, 2.0**-25, 3 * 2.0**-25, 65504, 65519.996, 65520,
                     2.0**-14 - 2.0**-25, 0.0, -0.0, np.inf, -np.inf], dtype=np.float32)
    ties_bf16 = np.array([0x3F808000, 0x3F818000, 0x00018000, 0x7F7F8000, 0x7F7FFFFF], np.uint32).view(np.float32)
    return np.concatenate([random_bits, spread, ties, -ties, ties_bf16, -ties_bf16])


def _torch_bits(x, dtype):
    return torch.from_numpy(x.copy()).to(dtype).view(torch.int16).numpy().view(np.uint16)


@pytest.mark.parametrize("name", list(FORMATS))
def test_format_limits(name):
    lim, fi = format_limits(*FORMATS[name]), torch.finfo(DTYPES[name])
    assert (lim["max"], lim["smallest_normal"], lim["eps"]) == (fi.max, fi.smallest_normal, fi.eps)
    one = torch.tensor([1], dtype=torch.int32 if name == "float32" else torch.int16).view(DTYPES[name])
    assert lim["smallest_subnormal"] == one.double().item()


@pytest.mark.parametrize("name, ours", [("bfloat16", float32_to_bfloat16_bits), ("float16", float32_to_float16_bits)])
def test_rounding_bits_equal_torch(name, ours):
    x = _values()
    got, ref = ours(x), _torch_bits(x, DTYPES[name])
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], ref[~nan])
    exp_mask = 0x7F80 if name == "bfloat16" else 0x7C00
    assert np.all((got[nan] & exp_mask) == exp_mask) and np.all((got[nan] & (0x7FFF & ~exp_mask)) != 0)


def test_round_to_values():
    x = _values()
    fin = np.isfinite(x)
    np.testing.assert_array_equal(round_to_bfloat16(x)[fin], torch.from_numpy(x[fin]).bfloat16().float().numpy())
    np.testing.assert_array_equal(round_to_float16(x)[fin], torch.from_numpy(x[fin]).half().float().numpy())
    assert float16_bits_to_float32(np.array([1], np.uint16))[0] == 2.0**-24


def test_truncation_is_not_rne():
    x = np.array([0x3F818000], np.uint32).view(np.float32)        # a tie with an odd last kept bit: rounds up
    assert float32_to_bfloat16_bits(x)[0] == 0x3F82 != (x.view(np.uint32)[0] >> 16)


def test_dynamic_scaler_equals_grad_scaler():
    try:
        scaler_t = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    except (TypeError, RuntimeError, ValueError, AttributeError):
        pytest.skip(f"torch {torch.__version__} has no GradScaler for the CPU")
    rng = np.random.default_rng(1)
    gs = (rng.choice([-1.0, 1.0], (30, 16)) * 10.0 ** rng.uniform(-8, -1, (30, 16))).astype(np.float32)
    gs[7, 2], gs[19, 4] = np.nan, np.inf
    p0, lr = rng.standard_normal(16).astype(np.float32), 2.0**-4
    ours, p = DynamicLossScaler(init_scale=2.0**16, growth_interval=3), p0.copy()
    pt = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.SGD([pt], lr=lr)
    skipped = 0
    for g in gs:
        skipped += not ours.step([p], [round_to_float16(ours.scale * g)], lr)
        ours.update()
        opt.zero_grad()
        scaler_t.scale((pt.half().float() * torch.from_numpy(g)).sum()).backward()
        scaler_t.step(opt)
        scaler_t.update()
        assert float(ours.scale) == scaler_t.get_scale()
        np.testing.assert_array_equal(p, pt.detach().numpy())
    assert skipped >= 2


def test_dynamic_scaler_rules():
    s = DynamicLossScaler(init_scale=8.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2)
    for inf, expected in ((False, 8), (False, 16), (True, 8), (False, 8), (False, 16)):
        g = np.array([np.inf if inf else 1.0], np.float32)
        assert s.step([np.zeros(1, np.float32)], [g], 0.1) is (not inf)
        s.update()
        assert s.scale == expected
