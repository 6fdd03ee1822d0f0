"""Op checks: which ops of a model run on the NPU, fall back to CPU, or fail (see support.py)."""
