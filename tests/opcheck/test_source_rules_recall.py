"""Source rules added for issue 12's recall misses, on real spellings (quoted from the named repos),
each with a negative or guarded twin."""

import textwrap

import pytest

from ascend_tools.opcheck.source_scan import scan_file


def scan(tmp_path, text):
    path = tmp_path / "t.py"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return {(f.line, f.rule, f.severity) for f in scan_file(str(path))}


def test_torch_compile_and_matmul_precision(tmp_path):
    # karpathy/llm.c train_gpt2.py
    found = scan(
        tmp_path,
        """\
        import torch
        torch.set_float32_matmul_precision('high')
        model = torch.compile(model)
        torch.set_float32_matmul_precision("highest")

        @torch.compile
        def step(x):
            return x
        """,
    )
    assert found == {
        (2, "cuda-backend-flags", "warning"),
        (3, "torch-compile", "warning"),
        (6, "torch-compile", "warning"),
    }


def test_bitsandbytes_through_transformers(tmp_path):
    # QLoRA fine-tuning notebooks / trl examples
    found = scan(
        tmp_path,
        """\
        import bitsandbytes as bnb
        from transformers import BitsAndBytesConfig, TrainingArguments
        bnb_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
        model = AutoModelForCausalLM.from_pretrained(mid, load_in_8bit=True, attn_implementation="flash_attention_2")
        args = TrainingArguments(output_dir="o", optim="paged_adamw_32bit", tf32=True)
        layer = bnb.nn.Linear4bit(4096, 4096)
        opt = bnb.optim.AdamW8bit(params)
        fine = TrainingArguments(output_dir="o", optim="adamw_torch", tf32=False, load_in_8bit=False)
        """,
    )
    assert found == {
        (1, "lib-bitsandbytes", "error"),
        (3, "lib-bitsandbytes", "error"),  # BitsAndBytesConfig() and load_in_4bit=True
        (4, "lib-bitsandbytes", "error"),
        (4, "lib-flash-attn", "warning"),
        (5, "lib-bitsandbytes", "error"),
        (5, "training-args", "error"),
        (6, "lib-bitsandbytes", "error"),
        (7, "lib-bitsandbytes", "error"),
    }


def test_dataclass_option_defaults(tmp_path):
    # tatsu-lab/stanford_alpaca train.py: a TrainingArguments subclass with field defaults
    found = scan(
        tmp_path,
        """\
        @dataclass
        class TrainingArguments(transformers.TrainingArguments):
            optim: str = field(default="paged_adamw_8bit")
            tf32: bool = True
            model_max_length: int = field(default=512)
            torch_compile: bool = False
        """,
    )
    assert found == {(3, "lib-bitsandbytes", "error"), (4, "training-args", "error")}


def test_nccl_through_a_variable(tmp_path):
    # karpathy/nanoGPT train.py: backend = 'nccl' ... init_process_group(backend=backend)
    found = scan(
        tmp_path,
        """\
        import torch.distributed as dist
        backend = 'nccl' # 'nccl', 'gloo', etc.
        def setup():
            pg = "nccl"
            dist.init_process_group(pg)
            other = "gloo"
            dist.init_process_group(backend=other)
        """,
    )
    assert found == {(2, "nccl-backend", "info"), (4, "nccl-backend", "info")}


def test_cpp_extension_sources_in_a_variable_and_cuda_cflags(tmp_path):
    found = scan(
        tmp_path,
        """\
        import os
        from torch.utils.cpp_extension import load
        module_path = os.path.dirname(__file__)
        sources = [os.path.join(module_path, "fused_bias_act.cpp"), os.path.join(module_path, "fused_bias_act_kernel.cu")]
        fused = load("fused", sources=sources)
        wkv_cuda = load(name="wkv", sources=srcs, verbose=True, extra_cuda_cflags=["-res-usage", "-O3"])
        cpu_only = load(name="cpu_op", sources=["op.cpp"])
        """,
    )
    # rosinality/stylegan2-pytorch op/fused_act.py; BlinkDL/RWKV-LM RWKV-v4 src/model.py
    assert found == {(5, "cuda-extension", "error"), (6, "cuda-extension", "error")}


def test_compiled_cuda_modules_by_name(tmp_path):
    # state-spaces/mamba selective_scan_interface.py; NVIDIA apex fused_adam_cuda
    found = scan(
        tmp_path,
        """\
        import selective_scan_cuda
        import fused_adam_cuda as fac
        from my_ops import nms_cuda
        from numba import cuda
        import cudaq_helper
        """,
    )
    assert found == {
        (1, "cuda-extension", "error"),
        (2, "cuda-extension", "error"),
        (3, "cuda-extension", "error"),
    }


def test_flash_attn_interface_spellings(tmp_path):
    # flash-attn v1 names and flash_attn_with_kvcache; bert_padding is plain PyTorch (only its import fails)
    found = scan(
        tmp_path,
        """\
        from flash_attn.flash_attn_interface import flash_attn_unpadded_func, flash_attn_with_kvcache
        from flash_attn.bert_padding import unpad_input, pad_input
        out = flash_attn_unpadded_func(q, k, v, cu, cu, s, s, 0.0)
        o2 = flash_attn_with_kvcache(q, kc, vc)
        x, idx, cu, mx = unpad_input(h, mask)
        """,
    )
    assert found == {
        (1, "lib-flash-attn", "error"),
        (2, "lib-flash-attn", "error"),
        (3, "lib-flash-attn", "error"),
        (4, "lib-flash-attn", "error"),
    }


def test_device_mesh_lightning_and_cuda_probes(tmp_path):
    found = scan(
        tmp_path,
        """\
        import os
        import lightning as L
        from torch.distributed.device_mesh import init_device_mesh
        from torch.utils.cpp_extension import CUDA_HOME
        mesh = init_device_mesh("cuda", (2, 4), mesh_dim_names=("dp", "tp"))
        cpu_mesh = init_device_mesh("cpu", (8,))
        trainer = L.Trainer(accelerator="gpu", devices=8, strategy="ddp")
        old = pl.Trainer(gpus=1)
        ok = L.Trainer(accelerator="cpu", gpus=0)
        home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
        arch = os.environ["TORCH_CUDA_ARCH_LIST"]
        if CUDA_HOME is None:
            pass
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0"
        user = os.environ.get("HOME")
        """,
    )
    assert found == {
        (5, "cuda-device-string", "warning"),
        (7, "lightning-accelerator", "warning"),
        (8, "lightning-accelerator", "warning"),
        (10, "cuda-env", "warning"),
        (11, "cuda-env", "warning"),
        (12, "cuda-env", "warning"),
        (14, "cuda-env", "warning"),
    }


# ---------------------------------------------------------------- guards and device branches


@pytest.mark.parametrize(
    "handler,severity",
    [
        ("logging.error('xformers not installed')", "error"),  # NameError later: no fallback
        ("print('no xformers')\n    raise", "error"),
        ("pass", "error"),
        ("memory_efficient_attention = None", "warning"),  # a real fallback
        ("from .sdpa import memory_efficient_attention", "warning"),
    ],
)
def test_log_only_except_is_not_a_fallback(tmp_path, handler, severity):
    found = scan(
        tmp_path,
        f"""\
try:
    from xformers.ops import memory_efficient_attention
except ImportError:
    {handler}
out = memory_efficient_attention(q, k, v)
""",
    )
    assert {s for line, rule, s in found if rule == "lib-xformers"} == {severity}


def test_cuda_only_branch_downgrades_the_call(tmp_path):
    found = scan(
        tmp_path,
        """\
        import torch
        from flash_attn import flash_attn_func
        def attn(q, k, v):
            if q.device.type == "cuda":
                return flash_attn_func(q, k, v, causal=True)
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        def attn2(q, k, v):
            if torch.cuda.is_available():
                return flash_attn_func(q, k, v)
            else:
                return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        def attn3(q, k, v):
            if torch.cuda.is_available():
                return flash_attn_func(q, k, v)
            return flash_attn_func(q, k, v)
        """,
    )
    calls = {line: sev for line, rule, sev in found if rule == "lib-flash-attn" and line > 2}
    assert calls == {5: "warning", 9: "warning", 14: "error", 15: "error"}


def test_calls_into_cuda_extensions_and_cuda_only_libraries(tmp_path):
    found = scan(
        tmp_path,
        """\
        import torch
        import torch.cuda.nccl as nccl
        from torch.utils.cpp_extension import load
        import apex
        import selective_scan_cuda
        from unsloth import FastLanguageModel
        from deepspeed.ops.adam import FusedAdam
        wkv_cuda = load(name="wkv", sources=["cuda/wkv_op.cpp", "cuda/wkv_cuda.cu"], verbose=True)
        cpu_ext = load(name="cpu_op", sources=["op.cpp"])
        class RWKV_TimeMix(torch.jit.ScriptModule):
            pass
        def step(w, u, k, v, y, device):
            wkv_cuda.forward(B, T, C, w, u, k, v, y)
            cpu_ext.forward(w)
            out = selective_scan_cuda.fwd(u, delta, A)
            model, tok = FastLanguageModel.from_pretrained("unsloth/llama-3-8b-bnb-4bit")
            opt = FusedAdam(params, lr=1e-3)
            model = apex.parallel.convert_syncbn_model(model)
            loc = f"cuda:{device}"
            snapshot = torch.load(path, map_location=loc)
            return nccl.version() >= (2, 10)
        """,
    )
    # BlinkDL/RWKV-LM RWKV-v4/src/model.py, state-spaces/mamba, unsloth README, NVIDIA apex imagenet,
    # pytorch/examples distributed/ddp-tutorial-series, pytorch/examples FSDP T5 utils/environment.py
    assert found == {
        (2, "cuda-call", "warning"),
        (4, "lib-apex", "error"),
        (5, "cuda-extension", "error"),
        (6, "lib-triton", "error"),
        (7, "lib-deepspeed-ops", "warning"),
        (8, "cuda-extension", "error"),
        (10, "jit-script", "warning"),
        (13, "cuda-extension", "error"),
        (15, "cuda-extension", "error"),
        (16, "lib-triton", "error"),
        (17, "lib-deepspeed-ops", "warning"),
        (18, "lib-apex", "error"),
        (19, "cuda-device-string", "info"),
        (21, "cuda-call", "warning"),
    }


def test_compute_capability_gate_is_a_warning(tmp_path):
    # lm-sys/FastChat llama2_flash_attn_monkey_patch.py
    found = scan(
        tmp_path,
        """\
        import torch
        cuda_major, cuda_minor = torch.cuda.get_device_capability()
        torch.cuda.get_device_name()
        """,
    )
    assert found == {(2, "cuda-call", "warning"), (3, "cuda-call", "info")}


def test_device_index_parsed_from_a_cuda_string(tmp_path):
    # BlinkDL/RWKV-LM RWKV-v4/src/trainer.py
    found = scan(
        tmp_path,
        """\
        cuda_id = int(str(self.device).strip('cuda:'))
        rank = int(dev.replace("cuda:", ""))
        name = text.strip()
        parts = line.split(",")
        """,
    )
    assert found == {(1, "cuda-device-string", "error"), (2, "cuda-device-string", "error")}
