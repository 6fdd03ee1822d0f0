"""check-ops -- COMMAND: the launch command parser, against what each launcher's own docs say it runs."""

import dataclasses

import pytest

from ascend_tools.errors import InputError
from ascend_tools.opcheck.launch_command import LaunchCommand, parse


@pytest.mark.parametrize(
    "argv, expected",
    [
        ("python train.py --lr 1e-4", LaunchCommand("python", "train.py", None, ("--lr", "1e-4"), 1)),
        ("python3 -u -W ignore train.py -x", LaunchCommand("python", "train.py", None, ("-x",), 1)),
        (
            "/usr/bin/python3.10 -m pkg.train --a 1",
            LaunchCommand("python", None, "pkg.train", ("--a", "1"), 1),
        ),
        ("python -mpkg.train", LaunchCommand("python", None, "pkg.train", (), 1)),
        (
            "torchrun --nproc_per_node 2 --master_port=29501 train.py --bs 4",
            LaunchCommand("torchrun", "train.py", None, ("--bs", "4"), 2),
        ),
        (
            "torchrun --standalone --nnodes=1:2 --nproc-per-node=gpu -m pkg.mod --x",
            LaunchCommand("torchrun", None, "pkg.mod", ("--x",), 8, 2),
        ),
        (
            "python -m torch.distributed.run --nproc_per_node=4 train.py",
            LaunchCommand("torchrun", "train.py", None, (), 4),
        ),
        (
            "accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 train.py --cfg c.yaml",
            LaunchCommand("accelerate", "train.py", None, ("--cfg", "c.yaml"), 4),
        ),
        (
            "accelerate launch --config_file acc.yaml train.py",
            LaunchCommand("accelerate", "train.py", None, (), 1),
        ),
        (
            "deepspeed --num_nodes 1 train.py --deepspeed ds.json",
            LaunchCommand("deepspeed", "train.py", None, ("--deepspeed", "ds.json"), 8),
        ),
        ("deepspeed --num_gpus=2 train.py", LaunchCommand("deepspeed", "train.py", None, (), 2)),
    ],
)
def test_parse(argv, expected):
    assert dataclasses.replace(parse(argv.split()), launcher_args=()) == expected


def test_launcher_options_are_kept_for_the_config_scan():
    cmd = parse(["accelerate", "launch", "--config_file", "acc.yaml", "--num_processes=2", "train.py", "--x"])
    assert cmd.launcher_args == ("--config_file", "acc.yaml", "--num_processes=2")
    assert LaunchCommand.from_json(dataclasses.asdict(cmd)) == cmd


def test_all_devices_is_the_configured_count():
    assert parse(["deepspeed", "train.py"], devices=4).nproc == 4


@pytest.mark.parametrize(
    "argv, words",
    [
        ("", "no command"),
        ("train.py --x", "put the interpreter first"),
        ("bash run.sh", "unknown launcher"),
        ("python -c print(1)", "-c"),
        ("python -u", "no script"),
        ("accelerate config", "accelerate launch"),
        ("torchrun --nproc_per_node", "needs a value"),
        ("torchrun --nproc_per_node x train.py", "positive count"),
        ("torchrun --standalone", "no training script"),
    ],
)
def test_bad_commands_are_one_line(argv, words):
    with pytest.raises(InputError) as info:
        parse(argv.split())
    assert words in str(info.value) and "\n" not in str(info.value)


def test_deepspeed_launcher_gives_the_script_its_local_rank_first():
    """deepspeed/launcher/launch.py runs ``python -u script --local_rank=N ARGS`` unless --no_local_rank;
    DeepSpeed-Chat's main() calls deepspeed.init_distributed() only when --local_rank is not -1."""
    assert parse(["deepspeed", "--num_gpus=1", "train.py", "--zero_stage", "2"]).script_args == (
        "--local_rank=0",
        "--zero_stage",
        "2",
    )
    assert parse(["deepspeed", "--no_local_rank", "train.py", "--x"]).script_args == ("--x",)
    assert parse(["torchrun", "train.py", "--x"]).script_args == ("--x",)
