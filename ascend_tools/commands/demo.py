"""``ascend-doctor demo``: every job on built-in examples."""

import click

from .common import handle_errors


@click.command("demo")
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False),
    default="ascend-doctor-demo",
    show_default=True,
    help="Directory for the demo reports.",
)
@handle_errors
def demo_cmd(output_dir: str) -> None:
    """Run every job on built-in examples (no device needed) and write the reports."""
    from .. import demo

    demo.run(output_dir, echo=click.echo)
