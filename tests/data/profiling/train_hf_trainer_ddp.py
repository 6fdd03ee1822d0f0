"""A Hugging Face Trainer DDP job as users write it (tiny GPT-2 from a config, random token data), with
the profiler's Trainer callback and one slow rank: rank ``--slow-rank`` sleeps ``--delay`` s before each
step (a slow data loader). Run under torchrun; needs transformers' Trainer (accelerate)."""

import argparse
import os
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from ascend_tools.profiling.hf import ProfilerCallback


class SlowRank(TrainerCallback):
    def __init__(self, rank: int, delay: float) -> None:
        self.slow = int(os.environ.get("RANK", 0)) == rank
        self.delay = delay

    def on_step_begin(self, args, state, control, **kwargs):
        if self.slow:
            time.sleep(self.delay)


class Tokens(torch.utils.data.Dataset):
    def __len__(self):
        return 4096

    def __getitem__(self, i):
        ids = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "labels": ids}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prof", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--window", type=float, default=0.0, help="always-on window s; 0: full records")
    p.add_argument("--slow-rank", type=int, default=1)
    p.add_argument("--delay", type=float, default=0.02)
    a = p.parse_args()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=64, n_embd=128, n_layer=4, n_head=4))
    args = TrainingArguments(
        output_dir=a.out,
        max_steps=a.steps,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        ddp_backend="gloo",
        disable_tqdm=True,
    )
    prof = ProfilerCallback(a.prof, always_on=a.window > 0, window_s=a.window or 60.0)
    Trainer(
        model=model, args=args, train_dataset=Tokens(), callbacks=[SlowRank(a.slow_rank, a.delay), prof]
    ).train()


if __name__ == "__main__":
    main()
