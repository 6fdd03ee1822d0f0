"""Fused ops (RMSNorm, RoPE, attention) with tiers: reference (pure PyTorch), npu (torch_npu), triton,
ascendc. ``registry.py`` picks the tier and self-checks it against the reference before first use."""
