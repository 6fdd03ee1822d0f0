"""A shadow report of the demo's faulty bf16 step: the tiny Llama of ``ascend-doctor demo`` in bfloat16,
its injected matmul fault entered before the shadow (as a faulty device kernel would be)."""

import torch

from ascend_tools.precision import demo_run, shadow
from ascend_tools.precision.faults import FaultInjector
from ascend_tools.report import Report


def shadow_report() -> Report:
    model_cls, config, state = demo_run.tiny_llama()
    model = model_cls(config)
    model.load_state_dict(state)
    model.to(torch.bfloat16)
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    with FaultInjector(demo_run.FAULT), shadow(model=model) as sh:
        model(input_ids=ids, labels=ids).loss.backward()
    return sh.report()
