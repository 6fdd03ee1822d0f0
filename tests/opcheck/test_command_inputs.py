"""scan_command: TrainingArguments flags on the command line, DeepSpeed JSON, accelerate YAML and
HfArgumentParser config files, each finding at file:line or command line:argN."""

import textwrap

import pytest

from ascend_tools.opcheck.command_inputs import parse_flags
from ascend_tools.opcheck.config_lines import json_entries, yaml_entries
from ascend_tools.opcheck.source_scan import as_report_finding, scan_command


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def at(findings):
    return {(f.location, f.rule, f.severity) for f in findings}


@pytest.fixture
def script(tmp_path):
    return write(tmp_path, "train.py", "import transformers\n")


def test_parse_flags_positions_and_forms():
    args = ["--tf32", "True", "--optim=adamw_torch", "--bf16", "--output-dir", "out", "pos"]
    assert parse_flags(args) == [
        (1, "tf32", "True"),
        (3, "optim", "adamw_torch"),
        (4, "bf16", True),
        (5, "output_dir", "out"),
    ]


def test_training_args_flags(tmp_path, script):
    # stanford_alpaca's README command: torchrun ... train.py --bf16 True ... --tf32 True
    args = [
        "--model_name_or_path", "m", "--bf16", "True", "--tf32", "True",
        "--optim", "paged_adamw_32bit", "--attn_implementation", "flash_attention_2",
        "--torch_compile", "--ddp_backend=nccl", "--half_precision_backend", "apex",
        "--use_liger_kernel", "true", "--load_in_4bit", "--output_dir", "out",
    ]  # fmt: skip
    found = at(scan_command(script, args, str(tmp_path)))
    assert found == {
        ("command line:arg5", "training-args", "error"),
        ("command line:arg7", "lib-bitsandbytes", "error"),
        ("command line:arg9", "lib-flash-attn", "warning"),
        ("command line:arg11", "torch-compile", "warning"),
        ("command line:arg12", "nccl-backend", "info"),
        ("command line:arg13", "lib-apex", "error"),
        ("command line:arg15", "lib-triton", "warning"),
        ("command line:arg17", "lib-bitsandbytes", "error"),
    }


def test_harmless_flag_values_are_not_findings(tmp_path, script):
    args = ["--tf32", "False", "--optim", "adamw_torch", "--attn_implementation", "sdpa", "--fp16", "--bf16"]
    args += ["--ddp_backend", "hccl", "--torch_compile", "false", "--load_in_8bit=False"]
    assert scan_command(script, args, str(tmp_path)) == []


DS_JSON = """\
{
  "train_micro_batch_size_per_gpu": "auto",
  "fp16": {"enabled": true, "loss_scale": 0},
  "bf16": {"enabled": false},
  "optimizer": {
    "type": "OneBitAdam",
    "params": {"lr": 1e-4}
  },
  "zero_optimization": {
    "stage": 3,
    "offload_optimizer": {"device": "cpu", "pin_memory": true},
    "offload_param": {"device": "nvme"},
    "zero_quantized_gradients": true
  },
  "amp": {"enabled": false}
}
"""


def test_deepspeed_json_from_the_deepspeed_flag(tmp_path, script):
    write(tmp_path, "ds.json", DS_JSON)
    found = scan_command(script, ["--deepspeed", "ds.json"], str(tmp_path))
    assert at(found) == {
        ("ds.json:3:1", "deepspeed-config", "info"),
        ("ds.json:6:1", "deepspeed-config", "error"),
        ("ds.json:11:1", "deepspeed-config", "info"),
        ("ds.json:12:1", "deepspeed-config", "warning"),
        ("ds.json:13:1", "deepspeed-config", "error"),
    }
    assert as_report_finding(found[0]).location == "ds.json:3:1"


def test_deepspeed_adam_is_info_and_missing_file_is_one_warning(tmp_path, script):
    # DeepSpeedExamples cifar: deepspeed.add_config_arguments -> --deepspeed --deepspeed_config ds_config.json
    write(tmp_path, "ds_config.json", '{"optimizer": {"type": "Adam", "params": {"lr": 0.001}}}')
    found = at(scan_command(script, ["--deepspeed", "--deepspeed_config", "ds_config.json"], str(tmp_path)))
    assert found == {("ds_config.json:1:1", "deepspeed-config", "info")}
    missing = scan_command(script, ["--deepspeed", "nope.json"], str(tmp_path))
    assert [(f.location, f.rule, f.severity) for f in missing] == [
        ("nope.json:1:1", "config-file", "warning")
    ]


ACCELERATE_YAML = """\
compute_environment: LOCAL_MACHINE
debug: false
deepspeed_config:
  deepspeed_config_file: ds.json  # the JSON above
  zero3_init_flag: true
distributed_type: DEEPSPEED
dynamo_config:
  dynamo_backend: INDUCTOR
gpu_ids: 0,1
mixed_precision: fp8
num_processes: 2
"""


def test_accelerate_yaml_from_the_launcher(tmp_path, script):
    write(tmp_path, "ds.json", '{\n  "optimizer": {"type": "Lamb"}\n}\n')
    write(tmp_path, "acc.yaml", ACCELERATE_YAML)
    found = at(scan_command(script, [], str(tmp_path), launcher_args=["--config_file", "acc.yaml"]))
    assert found == {
        ("ds.json:2:1", "deepspeed-config", "error"),
        ("acc.yaml:8:1", "torch-compile", "warning"),
        ("acc.yaml:9:1", "accelerate-config", "info"),
        ("acc.yaml:10:1", "accelerate-config", "error"),
    }


def test_accelerate_multi_gpu_and_launcher_flags(tmp_path, script):
    write(
        tmp_path,
        "acc.yaml",
        "distributed_type: MULTI_GPU\nmixed_precision: bf16\ndynamo_config:\n  dynamo_backend: 'NO'\n",
    )
    found = at(
        scan_command(script, [], str(tmp_path), ["--config_file", "acc.yaml", "--mixed_precision", "fp8"])
    )
    assert found == {
        ("acc.yaml:1:1", "accelerate-config", "info"),
        ("launcher:arg3", "accelerate-config", "error"),
    }


def test_hfargumentparser_yaml_file(tmp_path, script):
    # LLaMA-Factory / TRL style: `python train.py config.yaml`
    write(tmp_path, "ds.json", '{"amp": {"enabled": true}}')
    write(
        tmp_path,
        "sft.yaml",
        """\
        model_name_or_path: meta-llama/Llama-2-7b-hf
        # training
        optim: adamw_8bit
        tf32: true
        deepspeed: ds.json
        bf16: true
        """,
    )
    found = at(scan_command(script, ["sft.yaml"], str(tmp_path)))
    assert found == {
        ("sft.yaml:3:1", "lib-bitsandbytes", "error"),
        ("sft.yaml:4:1", "training-args", "error"),
        ("ds.json:1:1", "deepspeed-config", "error"),
    }


def test_script_findings_relative_to_cwd(tmp_path):
    write(tmp_path, "train.py", "import torch\ntorch.cuda.synchronize()\n")
    found = scan_command("train.py", [], str(tmp_path))
    assert [(f.location, f.rule) for f in found] == [("train.py:2:1", "cuda-call")]


def test_config_line_readers():
    text = '{"a": {"b": 1, "c": {"b": 2}},\n "b": 3}'
    assert [(e.path, e.line) for e in json_entries(text)] == [
        (("a",), 1), (("a", "b"), 1), (("a", "c"), 1), (("a", "c", "b"), 1), (("b",), 2)
    ]  # fmt: skip
    yaml = "a:\n  b: 'x'  # c\n  c:\n    d: 1.5\ne: no\n- item\n"
    assert [(e.path, e.value, e.line) for e in yaml_entries(yaml)] == [
        (("a",), {}, 1), (("a", "b"), "x", 2), (("a", "c"), {}, 3), (("a", "c", "d"), 1.5, 4), (("e",), False, 5)
    ]  # fmt: skip
