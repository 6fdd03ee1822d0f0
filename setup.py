"""Packaging for ascend-doctor (module ``ascend_tools``, console script ``ascend-doctor``)."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "ascend_tools", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

setup(
    name="ascend-doctor",
    version=read_version(),
    description="Port PyTorch LLM fine-tuning from NVIDIA GPUs to Huawei Ascend NPUs: "
    "op support, precision drift, fused kernels, distributed profiling.",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["ascend_tools", "ascend_tools.*"]),
    package_data={
        "ascend_tools.opcheck": ["data/*.json", "data/*.json.gz"],
        "ascend_tools.precision": ["data/*.json"],
    },
    include_package_data=True,
    # the demo's example models, for installs that are not a source checkout (see ascend_tools/demo.py)
    data_files=[("share/ascend-doctor/examples", ["examples/llama_7b.py", "examples/train_cuda.py", "examples/train_ddp.py"])],
    install_requires=[
        "torch>=2.1",
        "numpy",
        "click>=8.0",
        "psutil",
        "pyyaml",
        "py-spy",  # the stacks of every rank when a collective hangs (a ~3 MB binary wheel)
    ],
    extras_require={
        "npu": ["torch_npu"],
        "hf": ["transformers>=4.48"],
        "triton": ["triton"],
        # triton runs its kernels on the CPU under TRITON_INTERPRET=1 in the tests
        "test": ["pytest", "hypothesis", "ruff", "vermin", "transformers>=4.48", "triton"],
    },
    entry_points={"console_scripts": ["ascend-doctor=ascend_tools.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Developers",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
