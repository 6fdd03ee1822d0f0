"""The compiled modules as an Arm host (Kunpeng, the CPU of Ascend servers) builds them: without the x86-64
SIMD kernels (-DASCEND_DOCTOR_NO_SIMD). They compile without a warning, _moments runs its portable kernels
(NumPy's float64 statistics as the reference) and every _pair_sums function answers None, which sends
metrics.py to its NumPy pass."""

import importlib.util
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

SOURCES = Path(__file__).resolve().parents[2] / "ascend_tools" / "precision"
CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


def _build(name, out_dir):
    so = out_dir / (name + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [
        CC,
        "-O2",
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-DASCEND_DOCTOR_NO_SIMD",
        "-shared",
        "-fPIC",
    ]
    cmd += [f"-I{sysconfig.get_paths()['include']}", str(SOURCES / f"{name}.c"), "-o", str(so)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    spec = importlib.util.spec_from_file_location(name, so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_moments_without_simd(tmp_path):
    m = _build("_moments", tmp_path)
    assert m.simd() is False
    x = torch.randn(
        1001, 3, generator=torch.Generator().manual_seed(0)
    ).t()  # rows of unit stride: transposed
    mx, mn, total, sq = m.moments(x.data_ptr(), 0, x.shape, x.stride(), x.untyped_storage().nbytes())
    a = x.double().numpy()
    assert (mx, mn) == (a.max(), a.min())
    assert total == pytest.approx(a.sum(), abs=1e-4) and sq == pytest.approx(float((a * a).sum()), rel=1e-6)


def test_pair_sums_without_simd_leaves_every_pair_to_numpy(tmp_path):
    m = _build("_pair_sums", tmp_path)
    a = np.ones(16, np.float32)
    p = a.ctypes.data
    assert m.pair_sums(p, 0, p, 0, 16, -126, 127, 1.0) is None
    assert m.max_ulp(p, 0, p, 0, 16, 1.0, 2.0) is None and m.sum_squares(p, 0, 16) is None
    assert m.max_ulp_f64(p, 0, p, 2, 1.0, 2.0) is None
