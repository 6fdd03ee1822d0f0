"""The dotted import paths a launch command's config names: torchtune's ``_component_:
bitsandbytes.optim.PagedAdamW8bit`` and hydra's ``_target_`` in the file ``--config`` names, or a ``key=value``
override after it. A library (torchtune's ``config.instantiate``, hydra's ``instantiate``) imports them for
the user, by string; the stand-ins answer those imports as they answer the user's own (``standins.py``).
"""

from typing import FrozenSet, Iterable, Sequence

from ascend_tools.opcheck.command_inputs import DOTTED_PATH, config_file_entries

__all__ = ["named_paths", "names_module"]


def named_paths(script_args: Sequence[str], cwd: str) -> FrozenSet[str]:
    """Every dotted value of the script's config files and of its ``key=value`` arguments."""
    values = [e.value for e in config_file_entries(script_args, cwd)]
    values += [arg.partition("=")[2] for arg in script_args if "=" in arg and not arg.startswith("-")]
    return frozenset(v for v in values if isinstance(v, str) and DOTTED_PATH.match(v))


def names_module(paths: Iterable[str], module: str) -> bool:
    """Whether ``module`` is one of the paths or a package on the way to one (``bitsandbytes`` and
    ``bitsandbytes.optim`` for ``bitsandbytes.optim.PagedAdamW8bit``)."""
    return any(p == module or p.startswith(module + ".") for p in paths)
