"""ascend-doctor: move PyTorch LLM fine-tuning from NVIDIA GPUs to Huawei Ascend NPUs."""

__version__ = "0.1.0"
