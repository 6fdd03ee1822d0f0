"""A GPU fine-tuning script as people write it: CUDA-only imports at the top, the model built in main()."""

import argparse
import sys

import bitsandbytes as bnb
import torch
import torch.nn as nn
import torch.nn.functional as F
from apex.normalization import FusedLayerNorm
from flash_attn import flash_attn_func


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm = FusedLayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = bnb.nn.Linear4bit(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        return x + self.proj(flash_attn_func(q, k, v, causal=True).reshape(b, s, d))


class Model(nn.Module):
    def __init__(self, vocab, dim, heads, layers):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--exit-early", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("this script needs a GPU")
    device = torch.device("cuda", torch.cuda.current_device())
    model = Model(1000, args.dim, 4, args.layers).cuda()
    optimizer = bnb.optim.AdamW8bit(model.parameters(), lr=1e-4)
    if args.exit_early:
        sys.exit(3)
    data = torch.randint(0, 1000, (4, 33))
    for _ in range(args.steps):
        ids = data.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 1000), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print("loss", loss.item())


if __name__ == "__main__":
    main()
