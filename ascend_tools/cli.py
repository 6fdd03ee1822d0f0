"""The ``ascend-doctor`` command group. Each verb lives in ``ascend_tools/commands/<verb>.py``:
it parses options, calls the library and renders a Report."""

import click

from . import __version__
from .commands import (
    analyze,
    check_ops,
    compare,
    demo,
    dump,
    env,
    loss_compare,
    patch_status,
    profile,
    selfcheck,
    shadow,
)
from .commands.common import DEBUG_HELP, configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ascend-doctor")
@click.option("--debug", is_flag=True, help=DEBUG_HELP)
def main(debug: bool) -> None:
    """Port PyTorch LLM training from NVIDIA GPUs to Huawei Ascend NPUs.

    Exit status of every verb: 0 ran, nothing at or above --fail-on; 1 findings at or above --fail-on;
    2 bad input; 3 internal error (docs/cli.md)."""
    configure_logging(debug)


main.add_command(check_ops.check_ops_cmd)
main.add_command(env.env_cmd)
main.add_command(demo.demo_cmd)
main.add_command(compare.compare_cmd)
main.add_command(dump.dump_cmd)
main.add_command(loss_compare.loss_compare_cmd)
main.add_command(shadow.shadow_cmd)
main.add_command(selfcheck.selfcheck_cmd)
main.add_command(patch_status.patch_status_cmd)
main.add_command(analyze.analyze_cmd)
main.add_command(profile.profile_cmd)


if __name__ == "__main__":
    main()
