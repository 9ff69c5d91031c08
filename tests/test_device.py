import numpy as np
import pytest
import torch

import aicourse
# setup is not imported by name: pytest before 8 would run a module-level `setup` as a nose-style fixture
from aicourse.device import ParameterError, check_param, resolve_device, seed_everything


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if aicourse.device._has_mps() else "cpu")
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cpu:1", "", 3])
def test_unknown_device_is_one_sentence(bad):
    with pytest.raises(ParameterError) as err:
        resolve_device(bad)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_refused():
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_seeding_repeats():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert a == (np.random.rand(), torch.rand(1).item())
    with pytest.raises(ParameterError):
        seed_everything(-1)


def test_setup_fixes_numerics(capsys):
    dev = aicourse.setup(seed=0, device="cpu")
    assert dev.type == "cpu"
    assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
    assert torch.are_deterministic_algorithms_enabled()
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "torch" in line and "tf32 off" in line


def test_setup_is_strictly_deterministic_without_loading_the_compiler():
    """The set-up cell's deterministic switch is torch's own flag (read back by torch's public getters), strict
    (an op without a deterministic kernel raises), and it does not import torch.compile's stack (1-2 s a kernel)."""
    import subprocess
    import sys

    code = ("import sys, torch, aicourse; aicourse.setup(seed=0, device='cpu', verbose=False); "
            "print(torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled(), 'torch._inductor' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True False False"


def test_check_param():
    assert check_param("epochs", 3, int, low=1) == 3
    assert check_param("lr", 1, float) == 1  # an int is an acceptable float
    assert check_param("lr", 1e-3, float, above=0) == 1e-3
    for args, kw in [(("epochs", "3", int), {}), (("epochs", 0, int), {"low": 1}),
                     (("quick", 1, bool), {}), (("flag", True, int), {}),
                     (("mode", "x", str), {"choices": ("a", "b")}), (("lr", 0.0, float), {"above": 0}),
                     (("lr", float("nan"), float), {"above": 0})]:
        with pytest.raises(ParameterError):
            check_param(*args, **kw)


def test_threads_default_to_the_cores_shared_by_the_notebooks_running(monkeypatch):
    from aicourse.device import available_cores, set_threads

    monkeypatch.setenv("AICOURSE_JOBS", "2")
    assert set_threads(0) == max(1, available_cores() // 2) == torch.get_num_threads()
    assert set_threads(1) == 1 == torch.get_num_threads()
    monkeypatch.setenv("AICOURSE_JOBS", "many")
    with pytest.raises(ParameterError, match="AICOURSE_JOBS must be a whole number"):
        set_threads(0)
    with pytest.raises(ParameterError, match="threads must be a whole number >= 0"):
        set_threads(-1)
