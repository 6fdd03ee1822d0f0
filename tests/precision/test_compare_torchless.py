"""compare reads our dumps and measures their pairs without torch (its import is a second of the CLI's
start-up): the command's replay process imports it meanwhile (replay_pool.py) and replays there, and the report
made that way is the one an in-process compare_dumps makes."""

import json
import subprocess
import sys

import numpy as np
import torch
from test_compare_pool import demo_dumps  # noqa: F401 (a fixture)

from ascend_tools.precision import compare as C
from ascend_tools.precision.metrics import compare_tensors


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_the_compare_command_imports_no_torch_until_a_replay():
    code = "import sys, ascend_tools.cli; from ascend_tools.precision import compare; print('torch' in sys.modules)"
    assert _python(code).strip() == "False"


def test_a_compare_without_replays_never_imports_torch(demo_dumps):  # noqa: F811
    """--no-replay: the ranking of causes (NaN/Inf first, its op names) too reads no torch (a second of the
    command's time, 1.2 s of 2.2 s on the bench's pair before op_names.py)."""
    target, reference = demo_dumps
    code = (
        "import sys\n"
        "from ascend_tools.precision.compare import compare_dumps\n"
        f"report = compare_dumps({target!r}, {reference!r}, replay='none')\n"
        "print(bool(report.sections), 'torch' in sys.modules)\n"
    )
    assert _python(code).split() == ["True", "False"]


def test_bfloat16_bits_are_measured_without_torch_as_the_tensor_is():
    x = torch.randn(3, 1000, dtype=torch.float64).float()
    bits = x.bfloat16().view(torch.int16).numpy().view(np.uint16)
    code = (
        "import json, sys, numpy as np\n"
        "from ascend_tools.precision.metrics import RawBits, compare_tensors\n"
        f"bits = np.array({bits.tolist()}, dtype=np.uint16)\n"
        f"ref = np.array({x.numpy().tolist()}, dtype=np.float32)\n"
        "m = compare_tensors(RawBits(bits, 'bfloat16'), ref)\n"
        "print(json.dumps([m.to_json(), 'torch' in sys.modules]))\n"
    )
    got, torch_loaded = json.loads(_python(code))
    assert not torch_loaded
    assert got == compare_tensors(x.bfloat16(), x).to_json()


def test_the_compare_command_replays_without_importing_torch_itself(demo_dumps, tmp_path):  # noqa: F811
    target, reference = demo_dumps
    out = tmp_path / "report.json"
    code = (
        "import sys\n"
        "from ascend_tools.cli import main\n"
        "try:\n"
        f"    main(['compare', {target!r}, {reference!r}, '--fail-on', 'never', '-f', 'json', '-o', {str(out)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    assert _python(code).strip() == "False"
    cli = json.loads(out.read_text())
    here = json.loads(json.dumps(C.compare_dumps(target, reference).data))
    assert any(p["method"] == "replay" for p in here["pairs"])
    for key in ("pairs", "culprits", "summary", "first_culprit"):
        assert cli[key] == here[key], key
