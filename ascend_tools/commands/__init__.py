"""One module per verb; ``cli.py`` registers each command."""
