"""``from_pretrained`` and friends in the check-ops child (opcheck/hf_fake.py), run in a subprocess: the
patches are global to the process that installs them."""

import subprocess
import sys

import pytest

CHILD = """
import importlib.util, torch
from ascend_tools.opcheck import hf_fake
hf_fake.install()
from transformers import BitsAndBytesConfig
config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
print(config.load_in_4bit, importlib.util.find_spec("bitsandbytes") is None)
"""


def test_bitsandbytes_config_builds_without_bitsandbytes():
    """transformers 4.x's BitsAndBytesConfig(load_in_4bit=True) asks importlib.metadata for bitsandbytes'
    version (PackageNotFoundError where it is not installed, as on NPU machines); QLoRA scripts build one
    before from_pretrained, which then builds the model unquantized."""
    pytest.importorskip("transformers")
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["True", "True"]
