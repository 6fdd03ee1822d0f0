"""Child process of ``check-ops -- python train.py ARGS``: run the user's script unchanged, trace one step.

``python -m ascend_tools.opcheck.script_child SPEC.json OUT.json``. The script runs as ``__main__`` with its
own ``sys.argv`` (never this process's) and working directory, on the fake node (``fake_accelerator.py``),
with stand-ins for missing CUDA-only packages (``standins.py``), a fake process group for ``nccl`` and
the step trace (``step_trace.py``). OUT holds what ``child.py`` writes for a model file, plus
``runtime_findings`` (stand-in uses) and, when the step was not completed, the trace ``error``.
"""

import os
import runpy
import sys
import traceback
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from ..errors import InputError
from ..stacks import is_library
from . import fake_autocast, opaque_modules, patterns, verdicts
from .child import exit_now, serve
from .launch_command import LaunchCommand


def launcher_env(cmd: LaunchCommand) -> Dict[str, str]:
    """What torchrun/accelerate/deepspeed set for rank 0 of the node (the user's own values win)."""
    if cmd.launcher == "python":
        return {}
    world = cmd.nproc * cmd.nnodes
    env = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(cmd.nproc),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    precision = cmd.launcher_option("--mixed_precision") if cmd.launcher == "accelerate" else None
    if precision:  # accelerate launch hands its --mixed_precision to the Accelerator through the env
        env["ACCELERATE_MIXED_PRECISION"] = precision.lower()
    return env


#: nothing reaches the network: configs come from disk or the hub cache, experiment loggers are off (the
#: one-step run has nothing to log, and wandb's login would stop it)
OFFLINE = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def _fake_process_group() -> Any:
    """``init_process_group(nccl)`` initialises torch's fake backend instead: collectives return at once,
    so DDP/FSDP wrappers build; world size and rank from the launcher's environment."""
    import torch.distributed as dist

    original = dist.init_process_group

    def init_process_group(backend: Any = None, *args: Any, **kwargs: Any) -> Any:
        from torch.testing._internal.distributed.fake_pg import FakeStore

        kwargs.pop("init_method", None)
        kwargs.pop("store", None)
        for key, env, default in (("rank", "RANK", "0"), ("world_size", "WORLD_SIZE", "1")):
            given = kwargs.get(key)
            # -1 (torch's default, which DeepSpeed passes on) means: from the launcher's environment
            kwargs[key] = int(os.environ.get(env, default) if given is None or int(given) < 0 else given)
        return original("fake", store=FakeStore(), **kwargs)

    dist.init_process_group = init_process_group
    # DDP's check that every rank holds the same parameters all-gathers their shapes: the fake
    # backend's gather returns nothing real, and there is one rank here
    import torch.nn.parallel.distributed as ddp

    ddp._verify_param_shape_across_processes = lambda *args, **kwargs: None
    original_init = ddp.DistributedDataParallel.__init__

    def ddp_init(
        self: Any, module: Any, device_ids: Any = None, output_device: Any = None, *a: Any, **k: Any
    ) -> None:
        # the module is on meta: device_ids would make DDP copy every input to cuda:N on a side stream
        original_init(self, module, None, None, *a, **k)
        self.register_comm_hook(None, _allreduce_hook)

    ddp.DistributedDataParallel.__init__ = ddp_init  # type: ignore[method-assign]
    return dist


def _allreduce_hook(state: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's gradient all-reduce on the fake backend, whose future holds no tensor: the op is issued (and
    traced), the bucket comes back as it went."""
    dist.all_reduce(bucket.buffer())
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(bucket.buffer())
    return done


def _compile_unchanged(recorder: Any) -> None:
    """``torch.compile`` returns what it was given: inductor/Triton does not run here or on the NPU as is."""
    import torch

    from .standins import Package

    package = Package("torch-compile", 'torch.compile(backend="npu") via torchair, or run eager')

    def compile(model: Any = None, *args: Any, **kwargs: Any) -> Any:
        recorder.note("torch", "compile", package)
        return model if model is not None else (lambda fn: fn)

    torch.compile = compile


def _user_line(tb: Any) -> str:
    """``file:line`` of the innermost frame of the user's code in a traceback."""
    where = ""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not is_library(name) and "ascend_tools" not in name:
            where = f"{os.path.relpath(name)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def run_script(spec: Dict[str, Any]) -> Dict[str, Any]:
    import importlib.util

    from . import (
        accelerate_fake,
        config_components,
        cuda_extensions,
        deepspeed_fake,
        diffusers_fake,
        fake_accelerator,
        fsdp1_fake,
        fsdp2_fake,
        hf_fake,
        lightning_fake,
        spawn_fake,
        standins,
        step_trace,
        torch_load_fake,
        torchtune_fake,
    )

    cmd = LaunchCommand.from_json(spec["command"])
    os.chdir(spec["cwd"])
    for key, value in launcher_env(cmd).items():
        os.environ.setdefault(key, value)
    os.environ.update(OFFLINE)
    if cmd.script is not None:
        script = os.path.abspath(cmd.script)
        sys.path.insert(0, os.path.dirname(script))
    else:
        sys.path.insert(0, os.getcwd())
        try:
            found = importlib.util.find_spec(str(cmd.module))
        except ImportError:
            found = None
        if found is None or not found.origin:
            raise InputError(f"{cmd.target}: no such module (from {os.getcwd()})")
        script = found.origin
    sys.argv = [script, *cmd.script_args]
    recorder = standins.Recorder()
    named = config_components.named_paths(cmd.script_args, os.getcwd())
    sys.meta_path.append(standins.StandInFinder(recorder, named=sorted(named)))
    opaque = opaque_modules.OpaqueFinder()
    sys.meta_path.append(opaque)
    _fake_process_group()
    _compile_unchanged(recorder)
    cuda_extensions.install(recorder)
    hf_fake.install()
    diffusers_fake.install(recorder)
    deepspeed_fake.install()
    lightning_fake.install()
    accelerate_fake.install()
    fsdp1_fake.install()
    fsdp2_fake.install()
    spawn_fake.install()
    torch_load_fake.install()
    torchtune_fake.install()
    tracer = step_trace.StepTrace()
    stop: Optional[str] = None
    try:
        with fake_accelerator.fake_node(spec["devices"]), tracer.active(), fake_autocast.fake_cuda_autocast():
            if cmd.script is not None:
                runpy.run_path(script, run_name="__main__")
            else:
                runpy.run_module(str(cmd.module), run_name="__main__", alter_sys=True)
        stop = "the script ended without calling optimizer.step()"
    except step_trace.StepDone:
        pass
    except SystemExit as exc:
        where = _user_line(exc.__traceback__)
        stop = "the script exited with status {}{} before optimizer.step()".format(
            exc.code if exc.code is not None else 0, f" at {where}" if where else ""
        )
    except InputError:
        raise
    except (Exception, opaque_modules.OpaqueValueUsed) as exc:
        if spec.get("debug"):
            traceback.print_exc()
        where = _user_line(exc.__traceback__)
        stop = "{}: {}{}".format(
            type(exc).__name__, (str(exc).strip().splitlines() or [""])[0], f" at {where}" if where else ""
        )
    return _payload(spec, cmd, script, tracer, recorder.findings() + opaque.findings(), stop)


def _payload(
    spec: Dict[str, Any],
    cmd: LaunchCommand,
    script: str,
    tracer: Any,
    findings: List[Dict[str, Any]],
    stop: Any,
) -> Dict[str, Any]:
    version = spec["torch_npu_version"]
    events = tracer.ops.events
    error = ""
    if stop is not None:
        last = events[-1].op if events else "(before the first op)"
        error = f"trace stopped at {last} in the {tracer.phase} phase: only {len(events)} ops seen ({stop})"
    stream = verdicts.npu_stream(events, version)
    top_level = [e for e in stream if not e.via]
    return {
        "description": " ".join([cmd.launcher, cmd.target, *cmd.args]),
        "kind": "script",
        "source_file": script,
        "runtime_findings": findings,
        "trace": {
            "error": error,
            "assumed": tracer.ops.assumed,
            "events": len(events),
            "device": "meta (fake cuda node of {} devices)".format(spec["devices"]),
            "optimizer": tracer.optimizer,
            "backward_seen": tracer.backward_seen(),
            "phase": tracer.phase,
            **tracer.ops.precision.facts(),
        },
        "ops": verdicts.op_rows(stream, version, tracer.ops.sites, expanded=False),
        "patterns": patterns.summarize(patterns.find(top_level)),
    }


if __name__ == "__main__":
    exit_now(serve(sys.argv[1:], run_script, (InputError,)))
