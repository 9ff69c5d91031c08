import numpy as np
import pytest

import aicourse
from aicourse.data import batches, load_digits


def test_compare_returns_a_table_with_gflops():
    a = np.ones((32, 32))
    table = aicourse.compare({"matmul": lambda: a @ a, "add": lambda: a + a}, flops=2 * 32 ** 3,
                             threads=1, min_run_time=0.01)
    assert [t.name for t in table] == ["matmul", "add"]
    assert all(t.median_s > 0 and t.threads == 1 and t.gflops > 0 for t in table)
    text = str(table)
    assert "GFLOP/s" in text and "matmul" in text and "1.00x" in text


def test_digits_split_is_fixed_and_stratified():
    s1, s2 = load_digits(), load_digits()
    assert s1.X_train.shape == (1347, 64) and s1.X_test.shape == (450, 64)
    assert np.array_equal(s1.y_test, s2.y_test) and np.array_equal(s1.X_train, s2.X_train)
    assert 0.0 <= s1.X_train.min() and s1.X_train.max() <= 1.0 and s1.X_train.dtype == np.float64
    counts = np.bincount(s1.y_test)
    assert counts.min() >= 43 and counts.max() <= 46
    assert load_digits(images=True).X_train.shape == (1347, 1, 8, 8)
    assert not np.array_equal(load_digits(seed=1).y_test, s1.y_test)


def test_batches_cover_every_index_once():
    rng = np.random.default_rng(0)
    got = np.concatenate(list(batches(10, 3, rng)))
    assert sorted(got) == list(range(10))
    assert [len(b) for b in batches(10, 3, rng)] == [3, 3, 3, 1]
    assert list(np.concatenate(list(batches(5, 2, rng, shuffle=False)))) == [0, 1, 2, 3, 4]


def test_a_slow_case_is_timed_in_enough_blocks_for_its_iqr():
    """A call slower than the run time allows would give one block and an IQR of 0: the noise guard
    could never fire. Every timing has at least MIN_RUNS blocks."""
    import time

    from aicourse.timing import MIN_RUNS, time_it

    t = time_it("sleep", lambda: time.sleep(0.02), min_run_time=0.02)
    assert t.runs >= MIN_RUNS and t.iqr_s > 0


def test_importing_the_timer_writes_nothing_on_stderr():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import aicourse.timing"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
