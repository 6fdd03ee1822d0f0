"""Lightning (Fabric, Trainer strategies) in the check-ops child: meta parameters are the accelerator's.

On the fake node every parameter lives on meta (``fake_accelerator.py``). Fabric refuses an optimizer
that holds meta parameters, and the FSDP strategies materialise a module that has them; both ask
``_has_meta_device_parameters_or_buffers``, which is told "no" in each module that imported it.
"""

from typing import Any

from . import patch_on_import

CHECK = "_has_meta_device_parameters_or_buffers"
#: the modules that import the check by name (lightning 2.x, and the lightning_fabric/pytorch_lightning
#: packages of the same code)
MODULES = tuple(
    f"{package}.{module}"
    for package, module in (
        ("lightning.fabric", "fabric"),
        ("lightning.fabric", "strategies.fsdp"),
        ("lightning.pytorch", "strategies.fsdp"),
        ("lightning_fabric", "fabric"),
        ("lightning_fabric", "strategies.fsdp"),
        ("pytorch_lightning", "strategies.fsdp"),
    )
)


def _no_meta_parameters(*args: Any, **kwargs: Any) -> bool:
    return False


def _patch(module: Any) -> None:
    if hasattr(module, CHECK):
        setattr(module, CHECK, _no_meta_parameters)


def install() -> None:
    patch_on_import.install(dict.fromkeys(MODULES, _patch))
