#!/usr/bin/env python
"""What an op-level statistics capture would cost with its per-op hook in C++ instead of a Python dispatch mode.

    python bench/precision_cpp_floor.py [--rounds 3]

A measurement for issue 13's op-level line (<= 1.6x a bare step), not a way to capture: it records nothing. It
builds a small C++ extension (``torch.utils.cpp_extension.load_inline``: a C++ compiler and ninja, ~25 s) that
registers a thread-local ``at::RecordFunction`` observer with the ops' outputs: every aten op the dispatcher runs,
forward, backward and optimizer, without a Python frame per op. Variants, interleaved over ``--rounds`` rounds, each
the median of 10 steps after 3 in ``time.process_time``, on the tiny Llama train step of ``bench_precision.py``:

* ``bare``; ``empty-mode``: a Python dispatch mode that only calls the op (the hook ``capture`` has now);
* ``cpp-hook``: the observer with its outputs, doing nothing with them;
* ``cpp-stats``: the observer computing max, min, sum and sum of squares of each float32 output (eight-lane loop,
  float64 sums, built with ``-O3 -march=native -ffast-math`` so that the compiler vectorizes it as ``_moments.c``'s
  AVX2 kernels are by hand; without it the pass runs at a third of the speed) once per tensor value: a view's output is skipped (its base holds the values), and a tensor seen
  before at the same version (the output a composite op returns from the op inside it; an in-place op's ``self``
  is a new version) is not read again; the tensor's identity is checked through a weak pointer, so an address
  reused by a new tensor is read.

The difference between ``cpp-stats`` and ``cpp-hook`` is the statistics themselves; between ``empty-mode`` and
``cpp-hook`` what the Python hook costs before any record is made.
"""

import argparse
import contextlib
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/record_function.h>
#include <cmath>
#include <unordered_map>
#include <utility>
#include <vector>

using Weak = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
static std::unordered_map<const void*, std::pair<Weak, int64_t>> seen;
static at::CallbackHandle handle = 0;
static bool with_stats = true;
static int64_t read_tensors = 0;
static int64_t read_bytes = 0;
static double checksum = 0;  // keeps the statistics from being optimised away

static void moments(const at::Tensor& t) {
  if (t.scalar_type() != at::kFloat || !t.is_contiguous()) return;
  const float* p = t.const_data_ptr<float>();
  const int64_t n = t.numel();
  double s[8] = {0}, q[8] = {0};
  float hi[8], lo[8];
  for (int k = 0; k < 8; ++k) { hi[k] = -INFINITY; lo[k] = INFINITY; }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      float v = p[i + k];
      hi[k] = v > hi[k] ? v : hi[k];
      lo[k] = v < lo[k] ? v : lo[k];
      s[k] += v;
      q[k] += (double)v * v;
    }
  for (; i < n; ++i) { s[0] += p[i]; q[0] += (double)p[i] * p[i]; hi[0] = p[i] > hi[0] ? p[i] : hi[0]; lo[0] = p[i] < lo[0] ? p[i] : lo[0]; }
  for (int k = 0; k < 8; ++k) checksum += s[k] + q[k] + hi[k] - lo[k];
  ++read_tensors;
  read_bytes += n * 4;
}

static void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!with_stats) return;
  for (const auto& v : fn.outputs()) {
    if (!v.isTensor()) continue;
    const at::Tensor& t = v.toTensor();
    if (!t.defined() || t.numel() == 0 || t.is_meta() || t.is_view()) continue;
    const void* impl = t.unsafeGetTensorImpl();
    const int64_t version = (int64_t)t._version();
    auto it = seen.find(impl);
    if (it != seen.end() && !it->second.first.expired() && it->second.second == version) continue;
    seen.erase(impl);
    seen.emplace(impl, std::make_pair(Weak(t.getIntrusivePtr()), version));
    moments(t);
  }
}

void start(bool stats) {
  with_stats = stats;
  handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(nullptr, on_end).needsOutputs(true).scopes({at::RecordScope::FUNCTION}));
}

std::vector<int64_t> stop() {
  at::removeCallback(handle);
  seen.clear();
  std::vector<int64_t> read = {read_tensors, read_bytes};
  read_tensors = read_bytes = 0;
  return read;
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import bench_precision as bench
    import torch
    from torch.utils.cpp_extension import load_inline

    ext = load_inline(
        "ascend_doctor_cpp_floor",
        cpp_sources=SOURCE,
        functions=["start", "stop"],
        extra_cflags=["-O3", "-march=native", "-ffast-math"],
    )
    torch.set_num_threads(1)
    model, ids = bench.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    steps, warmup = 10, 3
    read: List[List[int]] = []

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @contextlib.contextmanager
    def observer(stats: bool) -> Any:
        ext.start(stats)
        try:
            yield
        finally:
            read.append(ext.stop())

    variants: Dict[str, Callable[[], Any]] = {
        "bare": contextlib.nullcontext,
        "empty-mode": bench._empty_mode,
        "cpp-hook": lambda: observer(False),
        "cpp-stats": lambda: observer(True),
    }
    ms: Dict[str, List[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, make in variants.items():
            times = []
            with make():
                for _ in range(warmup + steps):
                    start = time.process_time()
                    step()
                    times.append(time.process_time() - start)
            ms[name].append(statistics.median(times[warmup:]) * 1000)
    bare = statistics.median(ms["bare"])
    print(f"tiny Llama train step, CPU, 1 thread; CPU time per step, median of {args.rounds} rounds")
    for name, values in ms.items():
        med = statistics.median(values)
        print(f"{name:11s} {med:7.1f} ms  {med / bare:5.2f}x  rounds {', '.join(f'{v:.1f}' for v in values)}")
    tensors, nbytes = max(read)
    runs = warmup + steps
    print(f"cpp-stats read {tensors // runs} float32 tensors, {nbytes / runs / 1e6:.0f} MB a step")


if __name__ == "__main__":
    main()
