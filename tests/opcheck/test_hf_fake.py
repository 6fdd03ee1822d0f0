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


FLASH = """
import torch
from ascend_tools.opcheck import hf_fake, fake_accelerator
hf_fake.install()
from transformers import AutoModelForCausalLM
with fake_accelerator.fake_node(1):
    model = AutoModelForCausalLM.from_pretrained(DIR, attn_implementation="flash_attention_2")
print(model.config._attn_implementation)
"""


def test_flash_attention_2_without_flash_attn_builds_with_sdpa(tmp_path):
    """from_pretrained(..., attn_implementation="flash_attention_2") refuses to build where flash_attn is not
    installed; on NPU transformers runs that setting through torch_npu's fused attention, so the fake
    child builds the model with SDPA, the same attention."""
    pytest.importorskip("transformers")
    import importlib.util
    import json

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash_attn is installed")
    config = {"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32}
    config.update(num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = FLASH.replace("DIR", repr(str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "sdpa"


BNB_OPTIM = """
from ascend_tools.opcheck import hf_fake, standins
hf_fake.install()
from transformers import Trainer, TrainingArguments
args = TrainingArguments(output_dir=OUT, optim="paged_adamw_32bit", learning_rate=3e-4, report_to=[])
cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
print(cls is standins.AdamW, kwargs["lr"], kwargs["betas"])
"""


def test_bitsandbytes_optimizer_flag_steps_as_adamw(tmp_path):
    """--optim paged_adamw_32bit: the Trainer raises where bitsandbytes is not installed (4.x ValueError, 5.x
    ImportError: found when accelerate joined the test extra and this ran on transformers 5);
    the child gives AdamW with the run's learning rate and betas."""
    pytest.importorskip("transformers")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None or importlib.util.find_spec("accelerate") is None:
        pytest.skip("needs transformers' Trainer (accelerate) without bitsandbytes")
    code = BNB_OPTIM.replace("OUT", repr(str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "True 0.0003 (0.9, 0.999)"


NO_INIT = """
from ascend_tools.opcheck import hf_fake, fake_accelerator
hf_fake.install()
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.llama import modeling_llama

def refuse(self, module):
    raise RuntimeError("_init_weights ran")

modeling_llama.LlamaPreTrainedModel._init_weights = refuse
with fake_accelerator.fake_node(1):
    AutoModelForCausalLM.from_pretrained(DIR)
    print("from_pretrained: built")
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(DIR))
"""


def test_from_pretrained_builds_without_initialising_weights(tmp_path):
    """The real from_pretrained builds under ``no_init_weights`` (the checkpoint overwrites them), and under
    DeepSpeed ZeRO-3 must: ``_init_weights`` indexes parameters ``zero.Init`` has partitioned to empty
    tensors. from_config, by contrast, initialises (the refusing ``_init_weights`` is reached)."""
    pytest.importorskip("transformers")
    import json

    config = {"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32}
    config.update(num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = NO_INIT.replace("DIR", repr(str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "from_pretrained: built" in proc.stdout, proc.stderr[-2000:]
    assert proc.returncode != 0 and "_init_weights ran" in proc.stderr


CACHE_DIR = """
from ascend_tools.opcheck import hf_fake, fake_accelerator
hf_fake.install()
from transformers import AutoModelForCausalLM
with fake_accelerator.fake_node(1):
    model = AutoModelForCausalLM.from_pretrained("org/tiny", cache_dir=CACHE)
print(model.config.num_hidden_layers, model.config.hidden_size)
"""


def test_from_pretrained_reads_the_config_from_the_scripts_own_cache_dir(tmp_path):
    """``from_pretrained(hub_id, cache_dir=...)`` (DPO's reference trainer caches under its own directory)
    finds the config offline where the script's own call looks, in huggingface_hub's layout
    (models--org--name/snapshots/<commit>/, refs/main)."""
    pytest.importorskip("transformers")
    import json
    import os

    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    config = {"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32}
    config.update(num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2)
    (snapshot / "config.json").write_text(json.dumps(config))
    code = CACHE_DIR.replace("CACHE", repr(str(tmp_path)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "elsewhere"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["3", "16"]
