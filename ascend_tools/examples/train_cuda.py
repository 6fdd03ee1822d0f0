"""Fine-tune a small decoder-only LM on NVIDIA GPUs -- written the way GPU scripts usually are.

This file is deliberately full of CUDA-isms (flash_attn, torch.cuda.amp, .cuda(), NCCL, cuDNN flags,
float64 and eigh in the forward) so that ``ascend-doctor check-ops ascend_tools/examples/train_cuda.py``
has something to find. It is also a valid check-ops target: ``build_model()`` and ``example_inputs()``
touch no GPU, and the model runs on CPU and on the meta device. Run the training itself with
``torchrun --nproc_per_node=8 -m ascend_tools.examples.train_cuda``.
"""

import argparse
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

try:
    from flash_attn import flash_attn_func
except ImportError:  # no flash-attn wheel: fall back to PyTorch SDPA
    flash_attn_func = None

VOCAB = 1024
DIM = 64
HEADS = 4
LAYERS = 2
SEQ = 32


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary(x, base=10000.0):
    """Rotary position embedding on (batch, seq, heads, head_dim)."""
    seq, dim = x.shape[1], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    angles = torch.outer(torch.arange(seq, device=x.device, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        q, k = rotary(q), rotary(k)
        if flash_attn_func is not None and x.is_cuda:
            out = flash_attn_func(q, k, v, dropout_p=0.0, causal=True)  # (b, s, h, d)
        else:
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
            ).transpose(1, 2)
        return self.proj(out.reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = RMSNorm(dim)
        self.gate_up = nn.Linear(dim, 8 * dim, bias=False)
        self.down = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class TinyLM(nn.Module):
    """Decoder-only LM whose output head is spectrally normalised (W / sigma_max(W))."""

    def __init__(self, vocab=VOCAB, dim=DIM, heads=HEADS, layers=LAYERS):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.spectral = nn.Linear(dim, dim, bias=False)  # 64x64, normalised by its top singular value
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def spectral_weight(self):
        w = self.spectral.weight
        gram = (w @ w.t()).double()  # eigh in float64 "for stability", as GPU code often does
        sigma_max = torch.linalg.eigh(gram).eigenvalues[-1].clamp_min(1e-12).sqrt()
        return w / sigma_max.float()

    def forward(self, input_ids):
        h = self.embed(input_ids)
        for block in self.blocks:
            h = block(h)
        h = F.linear(self.norm(h), self.spectral_weight())
        return self.lm_head(h)


def build_model():
    """The check-ops entry point: cheap, CPU/meta only."""
    torch.manual_seed(0)
    return TinyLM()


def example_inputs():
    """Token ids (batch 2, SEQ tokens), int64 on CPU."""
    return (torch.randint(0, VOCAB, (2, SEQ), dtype=torch.int64),)


# ------------------------------------------------------------------ training (GPU only from here on)


def setup_distributed():
    os.environ["NCCL_SOCKET_IFNAME"] = "eth0"
    os.environ["NCCL_DEBUG"] = "WARN"
    os.environ.setdefault("NCCL_IB_DISABLE", "1")
    dist.init_process_group("nccl")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local_rank)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    return local_rank


def batches(steps, batch, device="cuda"):
    for _ in range(steps):
        tokens = torch.randint(0, VOCAB, (batch, SEQ + 1), device=device)
        yield tokens[:, :-1], tokens[:, 1:]


def train(args):
    local_rank = setup_distributed()
    model = build_model().cuda()
    model = DDP(model, device_ids=[local_rank])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scaler = torch.cuda.amp.GradScaler()
    print("training on", dist.get_world_size(), "ranks; backend:", "cuda")
    start = time.time()
    for step, (inputs, labels) in enumerate(batches(args.steps, args.batch)):
        with torch.cuda.amp.autocast(dtype=torch.float16):
            logits = model(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if step % 10 == 0 and dist.get_rank() == 0:
            torch.cuda.synchronize()
            mem = torch.cuda.max_memory_allocated() / 2**20
            ppl = math.exp(loss.item())
            print(
                f"step {step} loss {loss.item():.4f} ppl {ppl:.1f} mem {mem:.0f} MiB {time.time() - start:.1f}s"
            )
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
