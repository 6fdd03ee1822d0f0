"""Uses of CUDA-only libraries beyond their import: calls and values taken from their names, and calls of
local names that wrap CUDA-only code (kernel_wrappers). The misses these cover were found on scripts scored
blind (TinyLlama's rotary_emb / xentropy_cuda_lib calls, apex amp.initialize, qlora's bnb.nn.Linear4bit,
GaLore's GaLoreAdamW8bit); each case here is written to its known answer, not copied from a corpus file."""

import textwrap

from ascend_tools.opcheck.source_scan import scan_file, scan_target


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def at(findings, file_end=""):
    return {(f.line, f.severity) for f in findings if f.file.endswith(file_end)}


def test_calls_and_values_of_library_names_are_findings(tmp_path):
    findings = scan_file(
        write(
            tmp_path,
            "t.py",
            """\
            import rotary_emb
            import bitsandbytes as bnb
            from apex import amp
            from xformers.ops import SwiGLU
            from flash_attn.bert_padding import pad_input
            import triton.language as tl

            def f(x, m, o, name):
                rotary_emb.apply_rotary(x)
                cls = bnb.nn.Linear4bit
                m, o = amp.initialize(m, o)
                mlp = SwiGLU(8, 16)
                ok = isinstance(m, SwiGLU)
                y = pad_input(x)
                z = tl.load(x)
                return y
            """,
        )
    )
    lines = {f.line: f for f in findings}
    assert lines[9].severity == "error" and "rotary_emb.apply_rotary()" in lines[9].message
    assert lines[10].severity == "error" and "Linear4bit" in lines[10].message  # a value, not a call
    assert lines[11].severity == "warning"  # apex amp: Ascend's apex patch provides it, as for its import
    assert lines[12].severity == "error"
    # a type test, flash-attn's pure-PyTorch padding helpers and triton.language inside kernels are not uses
    assert not {13, 14, 15} & set(lines)


def test_library_use_in_a_cuda_only_branch_is_a_warning(tmp_path):
    findings = scan_file(
        write(
            tmp_path,
            "t.py",
            """\
            import dropout_layer_norm

            def norm(x):
                if x.device.type == "cuda":
                    return dropout_layer_norm.dropout_add_ln_fwd(x)
                return x
            """,
        )
    )
    assert (5, "warning") in at(findings)


KERNELS = """\
    import torch
    import xentropy_cuda_lib

    class _XentFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, labels):
            return xentropy_cuda_lib.forward(logits, labels)

    class FusedLoss(torch.nn.Module):
        def forward(self, logits, labels):
            return _XentFn.apply(logits, labels)

    fused_xent = _XentFn.apply

    def fused(logits, labels):
        return xentropy_cuda_lib.forward(logits, labels)

    def setup(model):
        model.loss = xentropy_cuda_lib.forward
        return model

    def plain(x):
        return x + 1
    """


def test_kernel_wrappers_of_one_module(tmp_path):
    from ascend_tools.opcheck.kernel_wrappers import Definitions, kernel_wrappers
    from ascend_tools.opcheck.source_scan import _scan

    scanner = _scan(str(write(tmp_path, "k.py", KERNELS)))
    tree = Definitions(scanner.tree, scanner.reads, scanner.returns)
    cuda_lines = [f.line for f in scanner.findings if f.severity == "error"]
    assert sorted(kernel_wrappers(tree, cuda_lines, [])) == ["FusedLoss", "_XentFn", "fused", "fused_xent"]
    assert "Extra" in kernel_wrappers(tree, cuda_lines, ["Extra"])  # re-exported from a wrapper's module


def test_calls_of_wrappers_imported_from_local_modules(tmp_path):
    write(tmp_path, "pkg/kernels.py", KERNELS)
    write(tmp_path, "pkg/__init__.py", "from .kernels import FusedLoss\nfrom .kernels import plain\n")
    write(
        tmp_path,
        "pkg/model.py",
        """\
        import torch
        from pkg.kernels import fused_xent

        class Head(torch.nn.Module):
            def forward(self, x, y):
                return fused_xent(x, y)

        class Block(torch.nn.Module):
            def __init__(self):
                self.head = Head()

        class Model(torch.nn.Module):
            def __init__(self):
                self.block = Block()
        """,
    )
    main = write(
        tmp_path,
        "main.py",
        """\
        from pkg import FusedLoss, plain
        from pkg.model import Model

        loss = FusedLoss()
        model = Model()
        y = plain(1)
        """,
    )
    findings = scan_target(main, cwd=str(tmp_path))
    assert (4, "error") in at(findings, "main.py")  # FusedLoss(): re-exported by pkg/__init__
    # Model reaches the kernel three definitions down; plain() uses none: their callers need no change
    assert not {5, 6} & {line for line, _ in at(findings, "main.py")}
    assert (6, "error") in at(findings, "model.py")  # fused_xent(...) inside Head


def test_cuda_asserts_computed_quantization_and_argparse_backend(tmp_path):
    findings = scan_file(
        write(
            tmp_path,
            "t.py",
            """\
            import argparse
            from transformers import AutoModelForCausalLM

            def check(x, y):
                assert x.is_cuda and y.is_cuda
                assert x.device.type == "cuda", "needs a GPU"
                assert not x.is_cuda
                assert x.device.type != "cuda"

            def load(args):
                return AutoModelForCausalLM.from_pretrained("m", load_in_4bit=args.bits == 4, load_in_8bit=False)

            parser = argparse.ArgumentParser()
            parser.add_argument("--dist-backend", default="nccl", type=str)
            parser.add_argument("--log-backend", default="tensorboard")
            parser.add_argument("--device", default="nccl")
            """,
        )
    )
    by = {(f.line, f.rule, f.severity) for f in findings}
    assert {(5, "cuda-assert", "error"), (6, "cuda-assert", "error")} <= by
    assert not {f for f in findings if f.rule == "cuda-assert" and f.line in (7, 8)}  # hold on NPU too
    # a computed load_in_4bit is the quantized path the script offers; a constant False is not
    assert [f.line for f in findings if f.rule == "lib-bitsandbytes"] == [11]
    assert [f.line for f in findings if f.rule == "nccl-backend"] == [14]


def test_module_import_below_the_function_that_uses_it(tmp_path):
    """microsoft/LoRA's gpt2_ft.py: ``amp.scale_loss`` in a function defined above
    ``if __name__ == "__main__": try: from apex import amp``; the function reads the global when it runs."""
    findings = scan_file(
        write(
            tmp_path,
            "t.py",
            """\
            import warnings

            def step(loss, opt):
                with amp.scale_loss(loss, opt) as scaled:
                    scaled.backward()

            if __name__ == "__main__":
                try:
                    from apex import amp
                except Exception:
                    warnings.warn("no apex")
            """,
        )
    )
    assert 4 in {f.line for f in findings if f.rule == "lib-apex"}


def test_failures_travel_through_siblings_in_any_import_order(tmp_path):
    """mistral-finetune: train.py imports pkg.ckpt (fails only through model.py) before pkg.wrapped, which
    imports .ckpt too; a function of a module that fails only through another module is no line to port."""
    write(tmp_path, "model.py", "import xformers.ops\n\ndef attention(q):\n    return q\n")
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/ckpt.py", "from model import attention\n\ndef save():\n    return 1\n")
    write(tmp_path, "pkg/wrapped.py", "import os\nfrom .ckpt import save\n\ndef load():\n    return save()\n")
    main = write(
        tmp_path,
        "main.py",
        "from pkg.ckpt import save\nfrom pkg.wrapped import load\n\nload()\nsave()\n",
    )
    by_file = {}
    for f in scan_target(main, cwd=str(tmp_path)):
        by_file.setdefault(f.file.rsplit("/", 1)[-1], set()).add((f.line, f.severity))
    assert (2, "error") in by_file["wrapped.py"]  # from .ckpt import save
    assert (1, "error") in by_file["ckpt.py"] and {(1, "error"), (2, "error")} <= by_file["main.py"]
    assert not {4, 5} & {line for line, _ in by_file["main.py"]}  # load(), save(): ported inside


def test_reading_cuda_visible_devices(tmp_path):
    findings = scan_file(
        write(
            tmp_path,
            "t.py",
            """\
            import os
            ids = [int(d) for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
            n = len(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(","))
            home = os.environ.get("HOME")
            """,
        )
    )
    assert {(f.line, f.rule, f.severity) for f in findings} == {
        (2, "cuda-env", "warning"),
        (3, "cuda-env", "warning"),
    }


def test_guarded_library_probes_and_method_imports_do_not_fail_the_module(tmp_path):
    """lit-llama: bitsandbytes behind an ImportError fallback used in `class X(bnb.nn.Linear8bitLt)` is a
    warning, and an import inside a method body does not run when the module is imported; diffusers:
    `xformers.__version__` is a probe, `unet.enable_xformers_memory_efficient_attention()` switches the
    kernels on."""
    write(
        tmp_path,
        "quant.py",
        """\
        try:
            import bitsandbytes as bnb
        except ImportError:
            bnb = None

        if bnb is not None:
            class Linear8bit(bnb.nn.Linear8bitLt):
                pass
        """,
    )
    write(
        tmp_path,
        "utils.py",
        """\
        import torch

        class EmptyInit:
            def __init__(self, mode):
                if mode == "int8":
                    from quant import Linear8bit
                    self.cls = Linear8bit

        class Proxy(dict):  # a second __init__ in the file (the scan once kept one span per name)
            def __init__(self):
                super().__init__()
        """,
    )
    main = write(
        tmp_path,
        "main.py",
        """\
        import xformers
        from utils import EmptyInit

        v = xformers.__version__
        unet.enable_xformers_memory_efficient_attention()
        """,
    )
    findings = scan_target(main, cwd=str(tmp_path))
    quant = {(f.line, f.severity) for f in findings if f.file.endswith("quant.py")}
    assert (7, "warning") in quant and not {s for _, s in quant} - {"warning"}
    main_lines = {(f.line, f.severity) for f in findings if f.file.endswith("main.py")}
    assert main_lines == {(1, "error"), (5, "error")}  # not line 2 (utils imports cleanly), not line 4


def test_fp8_recipes_colossalai_fused_optimizers_and_accelerate_dynamo(tmp_path):
    """Blind batch 6's misses: torchao FP8 through accelerate, ColossalAI's HybridAdam, TorchDynamoPlugin."""
    path = write(
        tmp_path,
        "t.py",
        """
        from accelerate import Accelerator
        from accelerate.utils import AORecipeKwargs, TorchDynamoPlugin
        from colossalai.nn.optimizer import CPUAdam, HybridAdam
        from torchao.float8 import Float8LinearConfig

        config = Float8LinearConfig()
        kwargs = [AORecipeKwargs(config=config)]
        dynamo = TorchDynamoPlugin(backend="inductor")
        eager = TorchDynamoPlugin(backend="no")
        optim = HybridAdam(params, lr=1e-4)
        offloaded = CPUAdam(params)
        """,
    )
    found = {(f.line, f.rule, f.severity) for f in scan_file(path)}
    assert found == {
        (7, "fp8-training", "error"),
        (8, "fp8-training", "error"),
        (9, "torch-compile", "warning"),
        (11, "lib-colossalai-kernels", "error"),
    }


def test_a_class_wraps_cuda_code_only_through_the_methods_its_use_runs(tmp_path):
    """Blind batch 7 (llm_qlora): QloraTrainer(config) runs no CUDA code; its load_base_model() builds the
    BitsAndBytesConfig, and the fix is there. A module whose forward() reaches the kernel is a wrapper."""
    write(
        tmp_path,
        "trainers.py",
        """
        import bitsandbytes as bnb
        from transformers import BitsAndBytesConfig


        class Trainer:
            def __init__(self, config):
                self.config = config

            def load(self):
                return BitsAndBytesConfig(load_in_4bit=True)


        class Linear8:
            def forward(self, x):
                return bnb.matmul(x, x)
        """,
    )
    main = write(
        tmp_path, "train.py", "from trainers import Trainer, Linear8\nt = Trainer({})\nlayer = Linear8()\n"
    )
    found = {(f.line, f.severity) for f in scan_target(main) if f.file.endswith("train.py")}
    assert (2, "error") not in found
    assert (3, "error") in found
