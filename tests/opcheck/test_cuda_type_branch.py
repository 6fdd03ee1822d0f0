"""``if device.type == "cuda":`` branches (opcheck/cuda_type_branch.py): on an NPU the device type is "npu",
so the body is skipped. Each case is written to its known answer (what the NPU run does with the branch),
after pytorch/examples' ImageNet script (the corpus's pt_imagenet, main.py:118 and :173), not copied."""

import textwrap

import pytest

from ascend_tools.opcheck.source_scan import scan_file


def branch_findings(tmp_path, body, orelse="    model.to(device)\n", test='device.type == "cuda"'):
    source = f"import torch\n\ndef setup(model, device, args):\n    if {test}:\n{textwrap.indent(body, '        ')}"
    source += f"    else:\n{textwrap.indent(orelse, '        ')}" if orelse else ""
    path = tmp_path / "train.py"
    path.write_text(source)
    return {(f.line, f.severity) for f in scan_file(path) if f.rule == "cuda-device-branch"}


@pytest.mark.parametrize(
    "body, orelse, severity",
    [
        # the process count: 1 on NPU, so a spawn starts one process per node
        ("ngpus_per_node = torch.accelerator.device_count()\n", "ngpus_per_node = 1\n", "error"),
        ("args.world_size = 8 * args.nodes\n", "", "error"),
        # the DDP wrapper: on NPU the model trains unwrapped
        ("model = torch.nn.parallel.DistributedDataParallel(model)\n", "", "error"),
        ("model.features = torch.nn.DataParallel(model.features)\n", "", "error"),
        # the else branch raises on NPU
        ("model.half()\n", "raise RuntimeError('a GPU is required')\n", "error"),
        # other setup work is skipped
        ("model.half()\nargs.batch_size *= 2\n", "", "warning"),
    ],
)
def test_a_skipped_body_that_changes_the_run_is_reported(tmp_path, body, orelse, severity):
    assert branch_findings(tmp_path, body, orelse) == {(4, severity)}


@pytest.mark.parametrize(
    "body, orelse, test",
    [
        # a log line only
        ("print('using', torch.cuda.get_device_name())\n", "", 'device.type == "cuda"'),
        ("logger.info('cuda')\nwarnings.warn('nccl wants 2 GPUs')\n", "", 'device.type == "cuda"'),
        # torch.cuda.* calls only: the scan reports them on their own lines
        ("torch.cuda.memory._record_memory_history()\n", "", 'device.type == "cuda"'),
        # a CUDA fast path whose fallback follows the if
        ("return flash_attn_func(q, k, v)\n", "", 'q.device.type == "cuda"'),
        # a string the script set stays "cuda" on NPU: not a device's type
        ("ngpus_per_node = 8\n", "ngpus_per_node = 1\n", 'device_type == "cuda"'),
        # the NPU takes the branch
        ("ngpus_per_node = 8\n", "ngpus_per_node = 1\n", 'device.type != "cpu"'),
    ],
)
def test_a_branch_the_npu_may_skip_is_not_reported(tmp_path, body, orelse, test):
    assert branch_findings(tmp_path, body, orelse, test) == set()


def test_the_comparison_line_is_reported_in_a_multiline_test(tmp_path):
    found = branch_findings(
        tmp_path,
        "model.half()\n",
        "",
        '(\n        args.gpu is not None\n        and device.type == "cuda"\n    )',
    )
    assert found == {(6, "warning")}
