"""The metadata lives in pyproject.toml; this file adds the one compiled module.

``ascend_tools.precision._moments`` (one pass for a CPU tensor's max, min, sum and sum of squares) is
optional: where no C compiler is, the build skips it and ``precision/stats.py`` uses torch's kernels.
"""

from setuptools import Extension, setup

_UNIX = ["-O3", "-std=c99"]

setup(
    ext_modules=[
        Extension(
            "ascend_tools.precision._moments",
            ["ascend_tools/precision/_moments.c"],
            extra_compile_args=_UNIX,
            optional=True,
        )
    ]
)
