"""Which code is the user's own in the check-ops child: the files of the script's tree, not torch, the
standard library, this package or a package installed in site-packages.

The stand-ins record only the user's uses and answer only the user's imports, and the fake node shows the
accelerator's device (``cuda:N``) only to the user's code: libraries keep seeing ``meta``, which their
``device.type == "meta"`` checks (``init_empty_weights``, ``from_pretrained``, ``to_empty``) rely on.
"""

from types import CodeType
from typing import Dict

from ..stacks import is_library

_USERS: Dict[str, bool] = {}


def installed(filename: str) -> bool:
    """Torch, the standard library, or a package installed in site-packages/dist-packages."""
    parts = filename.replace("\\", "/").split("/")
    return is_library(filename) or "site-packages" in parts or "dist-packages" in parts


def is_users(code: CodeType) -> bool:
    """Whether ``code`` is the user's, once per file (the fake node asks on every ``.device``; code objects
    are no key: two with the same body compare equal whatever their file)."""
    users = _USERS.get(code.co_filename)
    if users is None:
        users = _USERS[code.co_filename] = not installed(code.co_filename)
    return users
