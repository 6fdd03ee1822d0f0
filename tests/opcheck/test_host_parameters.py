"""A parameter the fake node moved from the host to meta is not meta to the user's code
(opcheck/host_parameters.py); parameters built on meta stay meta, and libraries see meta."""

import textwrap

import torch

from ascend_tools.opcheck import fake_accelerator


def _compiled_as(filename: str, source: str) -> dict:
    scope: dict = {}
    exec(compile(textwrap.dedent(source), filename, "exec"), scope)
    return scope


USER = """
import torch

def load_then_find_uninitialised(model, state_dict):
    # mistral-finetune's wrapped_model.py: weights assigned into a meta-built model, then the modules whose
    # parameters are all still meta are the LoRA layers to initialise
    model.load_state_dict(state_dict, strict=False, assign=True)
    return [name for name, m in model.named_children() if all(p.is_meta for p in m.parameters())]
"""


def test_checkpoint_weights_assigned_to_a_meta_model_are_not_meta_to_the_users_code(tmp_path):
    user = _compiled_as(str(tmp_path / "train.py"), USER)
    library = _compiled_as(
        "/usr/lib/python3/site-packages/somelib/utils.py", "def is_meta(t):\n    return t.is_meta\n"
    )
    with fake_accelerator.fake_node(8):
        with torch.device("meta"):
            model = torch.nn.ModuleDict({"frozen": torch.nn.Linear(4, 4), "lora": torch.nn.Linear(4, 2)})
        weights = {"frozen.weight": torch.ones(4, 4), "frozen.bias": torch.zeros(4)}
        model.load_state_dict(weights, strict=False)  # a library-side load: nothing assigned
        assert user["load_then_find_uninitialised"](model, weights) == ["lora"]
        # the weights are on meta all the same: libraries (FSDP, accelerate) see meta
        assert library["is_meta"](model["frozen"].weight) and library["is_meta"](model["lora"].weight)
        # a module built on the host under the fake node: its parameters were host data too
        assert (
            user["load_then_find_uninitialised"](torch.nn.ModuleDict({"x": torch.nn.Linear(2, 2)}), {}) == []
        )
    # the property is the fake node's only while it is active
    assert model["frozen"].weight.is_meta
