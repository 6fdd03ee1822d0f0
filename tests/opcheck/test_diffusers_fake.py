"""diffusers in the check-ops child (diffusers_fake.py), the xformers stand-in's version, and accelerate
launch's --mixed_precision reaching the script. Only the last test needs diffusers (the corpus' diffusers
venv, tests/data/checkops_corpus/make_venv_diffusers.sh); the others run without it."""

import json
import sys
import types

import pytest
import torch

from ascend_tools.errors import InputError
from ascend_tools.opcheck import diffusers_fake, standins
from ascend_tools.opcheck.launch_command import parse
from ascend_tools.opcheck.script_child import launcher_env


@pytest.mark.parametrize("flag", [["--mixed_precision=fp16"], ["--mixed_precision", "FP16"]])
def test_accelerate_launch_mixed_precision_reaches_the_accelerator(flag):
    """accelerate launch passes --mixed_precision to the script's Accelerator as ACCELERATE_MIXED_PRECISION
    (accelerate/utils/launch.py, prepare_simple_launcher_cmd_env), lower-cased."""
    cmd = parse(["accelerate", "launch", *flag, "train.py", "--lr", "1"])
    assert launcher_env(cmd)["ACCELERATE_MIXED_PRECISION"] == "fp16"
    assert cmd.args == ("--lr", "1")


def test_no_mixed_precision_without_the_flag():
    assert "ACCELERATE_MIXED_PRECISION" not in launcher_env(parse(["accelerate", "launch", "t.py"]))
    assert "ACCELERATE_MIXED_PRECISION" not in launcher_env(
        parse(["torchrun", "t.py", "--mixed_precision=fp16"])
    )


def test_the_xformers_stand_in_has_a_version(finder):
    """diffusers' train_text_to_image.py reads version.parse(xformers.__version__) after importing it."""
    import xformers

    assert xformers.__version__ == standins.PACKAGES["xformers"].version != ""


def _library_function(source):
    """The function defined by ``source``, as if in an installed package's file (diffusers' own code)."""
    scope = {}
    exec(compile(source, "/usr/lib/python3/site-packages/diffusers/models/modeling_utils.py", "exec"), scope)
    return next(v for k, v in scope.items() if k != "__builtins__")


_library_call = _library_function("def call(fn):\n    return fn()\n")


def _diffusers_utils(available):
    import_utils = types.SimpleNamespace(is_xformers_available=lambda: available)
    return types.SimpleNamespace(import_utils=import_utils, is_xformers_available=lambda: available)


def test_is_xformers_available_answers_true_to_the_user_only():
    utils = _diffusers_utils(False)
    diffusers_fake._patches(standins.Recorder())["diffusers.utils"](utils)
    assert utils.is_xformers_available() is True
    assert utils.import_utils.is_xformers_available() is True
    assert _library_call(utils.import_utils.is_xformers_available) is False


class _Model(torch.nn.Module):
    """A ModelMixin-like class whose xformers switch fails as diffusers' does without xformers."""

    def set_use_memory_efficient_attention_xformers(self, valid, attention_op=None):
        if valid:
            raise ModuleNotFoundError("Refer to https://github.com/facebookresearch/xformers")
        self.switched_off = True

    enable_xformers_memory_efficient_attention = _library_function(
        "def enable(self, attention_op=None):\n"
        "    self.set_use_memory_efficient_attention_xformers(True, attention_op)\n"
    )


def test_enabling_xformers_is_a_finding_at_the_users_line_and_keeps_the_attention():
    recorder = standins.Recorder()
    module = types.SimpleNamespace(ModelMixin=_Model)
    diffusers_fake._patches(recorder)["diffusers.models.modeling_utils"](module)
    model = _Model()
    line = sys._getframe().f_lineno + 1
    model.enable_xformers_memory_efficient_attention()
    assert [(u.module, u.what, u.site, u.package.rule) for u in recorder.uses] == [
        ("xformers.ops", "memory_efficient_attention", (__file__, line), "lib-xformers")
    ]
    model.set_use_memory_efficient_attention_xformers(False)
    assert model.switched_off


def test_from_pretrained_of_a_weightless_directory_builds_from_its_config(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    config = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "cross_attention_dim": 16,
        "norm_num_groups": 32,
    }
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    mixin = diffusers.models.modeling_utils.ModelMixin
    original = mixin.__dict__["from_pretrained"]
    diffusers_fake._patches(standins.Recorder())["diffusers.models.modeling_utils"](
        diffusers.models.modeling_utils
    )
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(
            tmp_path, subfolder="unet", dtype=torch.float16, low_cpu_mem_usage=False
        )
        # a keyword that is no loading option overrides the config (InstructPix2Pix's in_channels=8)
        wider = diffusers.UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet", in_channels=8)
        with pytest.raises(InputError, match="subfolder 'vae'"):
            diffusers.AutoencoderKL.from_pretrained(tmp_path, subfolder="vae")
    finally:
        mixin.from_pretrained = original
    assert not unet.training
    assert (unet.conv_in.in_channels, wider.conv_in.in_channels) == (4, 8)
    assert wider.config._name_or_path == str(tmp_path)
    assert list(unet.config.block_out_channels) == [32, 64]
    assert {p.dtype for p in unet.parameters()} == {torch.float16}
    out = unet(torch.zeros(1, 4, 8, 8, dtype=torch.float16), 1, torch.zeros(1, 3, 16, dtype=torch.float16))
    assert out.sample.shape == (1, 4, 8, 8)
