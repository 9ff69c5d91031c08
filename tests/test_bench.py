"""`aicourse bench`: it runs and writes its table and figure, bad input is one sentence, and every op times
one computation twice (the NumPy callable and the torch callable return the same numbers)."""

import numpy as np
import pytest
import torch

from aicourse import check
from aicourse.bench import OPS, select
from aicourse.cli import main

DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def test_command_writes_every_requested_op_with_the_columns(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "linear-fwd", "layernorm", "mlp-step", "--quick", "--threads", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    table = (out / "bench.md").read_text()
    assert table in capsys.readouterr().out
    lines = table.splitlines()
    assert "| op | size | NumPy f64 | torch cpu f64 | NumPy / torch cpu |" in lines
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"op", "linear-fwd", "layernorm-fwd", "layernorm-bwd", "mlp-step"}
    assert "GFLOP/s" in rows["linear-fwd"] and "GFLOP/s" not in rows["layernorm-fwd"]
    assert all(row.rstrip(" |").endswith("×") for op, row in rows.items() if op != "op")
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args", [["nope"], ["linear-fwd", "--device", "tpu"], ["linear-fwd", "--threads", "0"]])
def test_bad_op_device_or_threads_is_one_sentence_and_writes_nothing(tmp_path, capsys, args):
    out = tmp_path / "bench"
    assert main(["bench", *args, "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aicourse: error: ") and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_a_family_selects_its_ops_in_registry_order():
    assert select(["conv2d"]) == ["conv2d-naive-fwd", "conv2d-naive-bwd", "conv2d-fwd", "conv2d-bwd"]
    assert select(["lstm-bwd", "lstm"]) == ["lstm-bwd", "lstm-fwd"]
    assert select(None) == list(OPS)


def _flat(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


@pytest.fixture()
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("name", list(OPS))
def test_numpy_and_torch_callables_compute_the_same(name, no_tf32):
    case = OPS[name](np.random.default_rng(0), True)
    ours = [np.copy(a) for a in _flat(case.numpy())]       # mlp-step returns its parameters, updated in place
    for dev in DEVICES:
        dtype = torch.float64 if dev.type == "cpu" else torch.float32
        theirs = _flat(case.torch(dev, dtype)())
        assert len(ours) == len(theirs)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            check(f"{name} output {i}", a, b)
