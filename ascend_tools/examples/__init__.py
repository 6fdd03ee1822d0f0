"""Example training scripts, shipped for ``ascend-doctor demo`` and to try the other jobs on:

- ``llama_7b.py``: Llama-2-7B from its config, a ``check-ops`` target (traced on the meta device);
- ``train_cuda.py``: a GPU fine-tuning script full of CUDA-isms, a ``check-ops`` target;
- ``train_ddp.py``: a small DDP job with injectable faults, run under ``ascend-doctor profile``.

They stand for the user's code: stack walks count their frames as the user's, not this package's.
Run one with ``python -m ascend_tools.examples.<name>`` (``torchrun ... -m ascend_tools.examples.train_ddp``).
"""
