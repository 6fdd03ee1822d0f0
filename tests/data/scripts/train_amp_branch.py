"""A bf16 mixed-precision loop whose model picks its attention by device, with an experiment tracker that is
not installed (the worked example of docs/check-ops.md: device branches, CUDA autocast, a missing module)."""

import argparse

import notinstalled_tracker  # an experiment tracker, not installed here
import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm = torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if q.device.type == "cuda":
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # the CPU path, written out
            mask = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
            scores = (q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5).masked_fill(mask, float("-inf"))
            attn = scores.softmax(-1) @ v
        return x + self.out(attn.transpose(1, 2).reshape(b, s, d))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch.nn.Sequential(
        torch.nn.Embedding(100, args.dim), Block(args.dim, 4), torch.nn.Linear(args.dim, 100)
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = notinstalled_tracker.init(project="demo")
    ids = torch.randint(0, 100, (2, 16), device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids)
        loss = F.cross_entropy(logits.view(-1, 100), ids.view(-1))
    loss.backward()
    optimizer.step()
    run.log({"loss": loss.item()})


if __name__ == "__main__":
    main()
