"""The metadata lives in pyproject.toml; this file adds the compiled modules.

``ascend_tools.precision._moments`` (one pass for a CPU tensor's max, min, sum and sum of squares, for
``stats.py``) and ``ascend_tools.precision._pair_sums`` (one pass for a pair's metrics, for ``metrics.py``) are
optional: where no C compiler is, the build skips them and the package uses torch's and NumPy's kernels.
"""

from setuptools import Extension, setup

_UNIX = ["-O3", "-std=c99"]

setup(
    ext_modules=[
        Extension(
            f"ascend_tools.precision.{name}",
            [f"ascend_tools/precision/{name}.c"],
            extra_compile_args=_UNIX,
            optional=True,
        )
        for name in ("_moments", "_pair_sums")
    ]
)
