"""The script's own config files (blind batch 5's misses: torchtune's and TRL's ``--config`` YAML): read as
options, and every value read for the CUDA-only components and devices it names; DeepSpeed's
``torch_adam``. Each case is written to its known answer, not copied from a corpus file."""

import textwrap

from ascend_tools.opcheck.command_inputs import command_options, scan_command_inputs

TORCHTUNE = """\
model:
  _component_: torchtune.models.llama3_2.llama3_2_1b
optimizer:
  _component_: bitsandbytes.optim.PagedAdamW8bit
  lr: 2e-5
compile: False
device: cuda
dtype: bf16
"""

TRL = """\
model_name_or_path: m
attn_implementation: sdpa
load_in_4bit: true
bf16: true
"""


def write(tmp_path, name, text):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return name


def by_line(findings):
    return {(f.line, f.rule, f.severity) for f in findings}


def test_a_component_path_and_a_device_in_a_config_yaml(tmp_path):
    name = write(tmp_path, "cfg.yaml", TORCHTUNE)
    found = by_line(scan_command_inputs(["--config", name], str(tmp_path)))
    assert found == {(4, "lib-bitsandbytes", "error"), (7, "cuda-device-string", "info")}


def test_trl_config_flag_reads_options_and_the_command_line_wins(tmp_path):
    name = write(tmp_path, "sft.yaml", TRL)
    assert by_line(scan_command_inputs(["--config", name], str(tmp_path))) == {
        (3, "lib-bitsandbytes", "error")
    }
    options = command_options(["--config", name, "--load_in_4bit=false"], str(tmp_path))
    assert (
        options["load_in_4bit"] == "false"
        and options["bf16"] is True
        and options["model_name_or_path"] == "m"
    )


def test_a_config_flag_naming_no_config_file_is_not_read(tmp_path):
    write(tmp_path, "lora.json", '{"optim": "paged_adamw_8bit"}')
    assert scan_command_inputs(["--lora_config", "lora.json"], str(tmp_path)) == []
    assert scan_command_inputs(["--config", "missing.txt"], str(tmp_path)) == []


def test_deepspeed_torch_adam_builds_no_fused_op(tmp_path):
    ds = '{"optimizer": {"type": "AdamW", "params": {"lr": 1e-4%s}}}'
    write(tmp_path, "fused.json", ds % "")
    write(tmp_path, "torch.json", ds % ', "torch_adam": true')
    fused = scan_command_inputs(["--deepspeed", "fused.json"], str(tmp_path))
    assert [f.rule for f in fused] == ["deepspeed-config"]  # the NPU FusedAdam builder note
    assert scan_command_inputs(["--deepspeed", "torch.json"], str(tmp_path)) == []


def test_attention_kernels_chosen_in_a_model_config(tmp_path):
    name = write(
        tmp_path,
        "mpt.yaml",
        "model:\n  config_overrides:\n    attn_config:\n      attn_impl: flash\n"
        "other:\n  attn_impl: torch\nflash_attention: true\nxformers_attention: false\n",
    )
    found = by_line(scan_command_inputs([name], str(tmp_path)))
    assert found == {(4, "lib-flash-attn", "error"), (7, "lib-flash-attn", "error")}


def test_a_config_file_flag_naming_a_file_the_script_writes(tmp_path):
    """ColossalChat's --config_file is where it saves its arguments: absent before the run, not read."""
    assert scan_command_inputs(["--config_file", "logs/args.json"], str(tmp_path)) == []
    assert command_options(["--config_file", "logs/args.json"], str(tmp_path)) == {
        "config_file": "logs/args.json"
    }
