"""ascend-doctor's ``sitecustomize`` (see ``ascend_tools/launch.py``): the only file in its directory, which
``launch.run`` puts on the launched command's ``PYTHONPATH``.

At interpreter start it takes its directory off ``sys.path``, runs the ``sitecustomize`` that it hides (the
user's, further down the path) first, and installs a finder on ``sys.meta_path``. Once the process has imported
``torch`` it decides its role (:func:`_role`) and starts the tool. The role is decided then, not at interpreter
start, so that a Python launcher that never imports torch (``python launcher.py`` running ``python train.py``,
a shell script's ``torchrun``) leaves the top role to the process that trains. A process that never imports
torch (``python -c "print(1)"``) pays for an environment lookup and nothing else.
"""

import os
import sys

ENV = "ASCEND_DOCTOR_LAUNCH"
ENV_ACTIVE = "ASCEND_DOCTOR_ACTIVE"
CHILD_TOOLS = ("profile",)  # the tools a child of an instrumented process runs too (mp.spawn ranks)
TORCHRUN = ("torchrun", "torch.distributed.run", "torch.distributed.launch")  # as launch.TORCHRUN
# launchers that import torch to start the processes that train and train nothing themselves: their console
# scripts (by file name) and their modules (``python -m``). ``accelerate launch`` starts one ``python train.py``
# without RANK, or workers with it; ``deepspeed`` starts ``deepspeed.launcher.launch``, which starts the workers;
# ``trl sft|dpo|...`` runs ``accelerate launch`` of TRL's script in-process
LAUNCHER_SCRIPTS = ("torchrun", "accelerate", "accelerate-launch", "deepspeed", "trl")
LAUNCHER_MODULES = (
    *TORCHRUN[1:],
    "accelerate.commands.launch",
    "accelerate.commands.accelerate_cli",
    "deepspeed.launcher.runner",
    "deepspeed.launcher.launch",
)
HERE = os.path.dirname(os.path.abspath(__file__))


def _warn(what, exc):
    sys.stderr.write(f"ascend-doctor: {what}: {type(exc).__name__}: {exc}\n")


def _chain():
    """Run the next ``sitecustomize`` on the path (the user's), as Python would have without us."""
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
    if spec is not None and spec.loader is not None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)


def _role():
    """``"top"``, ``"child"`` or None (not instrumented), decided once this process has imported torch. The
    first process of the command to import torch, launchers aside (:func:`_launcher`), claims the top role
    (``ASCEND_DOCTOR_ACTIVE`` in its environment); what it starts from then on descends from it."""
    import json

    opts = json.loads(os.environ[ENV])
    if _launcher():
        # what it starts trains: those processes are the command's, whoever started the launcher (a CLI that
        # imports torch and starts torchrun on several devices, ``llamafactory-cli train``, claimed the top role
        # and records nothing itself: its capture takes no rank directory before its first record)
        os.environ.pop(ENV_ACTIVE, None)
        return None
    if os.environ.get(ENV_ACTIVE):  # a descendant of an instrumented process
        return "child" if opts.get("tool") in CHILD_TOOLS else None
    if "RANK" not in os.environ and opts.get("require_rank"):  # under torchrun: no worker
        return None
    os.environ[ENV_ACTIVE] = str(os.getpid())
    return "top"


def _launcher():
    """Whether this process runs a launcher (``torchrun ...``, ``accelerate launch ...``, ``deepspeed ...``,
    ``python -m torch.distributed.run ...``): it imports torch to start the processes that train and trains
    nothing itself (before, ``accelerate launch`` took the top role and its ``python train.py`` got no tool)."""
    argv = getattr(sys, "orig_argv", None)  # Python 3.10+
    if argv is None:
        try:
            with open("/proc/self/cmdline", "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            argv = list(sys.argv)
    for i, arg in enumerate(argv[1:], 1):  # python's own options, then the launcher's script or -m MODULE
        if arg == "-m":
            return argv[i + 1 : i + 2] in ([t] for t in LAUNCHER_MODULES)
        if not arg.startswith("-"):
            return os.path.basename(arg) in LAUNCHER_SCRIPTS
    return False


def _activate(role):
    """Start the tool (torch is imported). Our package is loaded from the directory above this one
    without putting that directory on ``sys.path``."""
    try:
        if "ascend_tools" not in sys.modules:
            import importlib.util

            pkg = os.path.dirname(HERE)
            spec = importlib.util.spec_from_file_location(
                "ascend_tools", os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
            )
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules["ascend_tools"] = mod
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules["ascend_tools"]
                raise
        from ascend_tools.launch import start_from_env

        start_from_env(child=role == "child")
    except Exception as exc:  # never stop the user's program
        _warn("not started", exc)


class _TorchHook:
    """A ``sys.meta_path`` finder that only watches for ``torch``: it lets the other finders find it and
    wraps that spec's loader's ``exec_module`` (on that loader object only, so ``torch.__loader__`` keeps its
    type) to call ``_activate`` once torch's ``__init__`` has run. It leaves ``sys.meta_path`` then, not when
    it is asked: ``importlib.util.find_spec("torch")`` alone, an availability check that imports nothing
    (``import datasets``, ``import transformers``, ``trl``: before ``import torch`` in an isort-sorted script),
    finds torch through it too, and the import that comes later must still be seen."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        import importlib.util

        where = self.remove()
        try:
            # the other finders' answer (this one is off the path meanwhile: no recursion)
            spec = importlib.util.find_spec(name)
        finally:
            if where is not None:
                sys.meta_path.insert(where, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            self.remove()
            try:
                run(module)
            finally:
                try:  # noqa: SIM105 (contextlib is not imported at interpreter start)
                    del loader.exec_module
                except AttributeError:
                    pass
            _start()

        loader.exec_module = exec_module
        return spec

    def remove(self):
        """Leave ``sys.meta_path``; where it was there (None: it was not)."""
        for i, finder in enumerate(sys.meta_path):
            if finder is self:
                del sys.meta_path[i]
                return i
        return None


def _main():
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    try:
        _chain()
    except Exception as exc:
        _warn("the original sitecustomize failed", exc)
    if not os.environ.get(ENV):
        return
    if "torch" in sys.modules:  # imported by the user's sitecustomize
        _start()
    else:
        sys.meta_path.insert(0, _TorchHook())


def _start():
    """torch is imported: start the tool where this process has a role."""
    try:
        role = _role()
    except Exception as exc:
        _warn("not started", exc)
        return
    if role is not None:
        _activate(role)


_main()
