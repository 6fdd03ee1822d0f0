"""shadow through DTensor: tensor parallel and FSDP2's optimizer compute on DTensors, and the kernels that can be
wrong run on their plain local tensors. Before, the shadow saw the DTensor-level op only (a tensor subclass: skipped,
"not a plain tensor"), and what DTensor ran below it was unseen (a mode is off inside its own handler): a wrong local
kernel went unfound. Now the op is handed to DTensor and its local ops are checked one by one; the ops DTensor runs on
FakeTensors to work out output shapes are not ops of the run. One gloo rank in this process."""

import pytest
import torch
import torch.distributed as dist

from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_session import shadow

pytestmark = pytest.mark.slow


@pytest.fixture
def mesh(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield init_device_mesh("cpu", (1,))
    dist.destroy_process_group()


def _operands(mesh):
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    torch.manual_seed(0)
    x = distribute_tensor(torch.randn(8, 16), mesh, [Shard(0)])
    w = distribute_tensor(torch.randn(16, 4), mesh, [Replicate()])
    return x, w


def test_the_local_ops_of_a_dtensor_op_are_checked(mesh):
    x, w = _operands(mesh)
    with shadow() as sh:
        y = torch.mm(x, w).relu()
    assert type(y).__name__ == "DTensor"
    assert [r.key for r in sh.results] == ["aten::mm#init#0", "aten::relu#init#0"]
    assert all(r.level == "pass" for r in sh.results)
    assert sh.skipped["not a plain tensor"] == 0 and sh.internal_errors == 0
    # nor are the factory ops of DTensor's shape propagation (``empty_strided`` under FakeTensorMode, no tensor
    # argument to tell): they were counted as 3 "uninitialised" skips
    assert not any(sh.skipped.values()), dict(sh.skipped)


def test_a_wrong_local_kernel_under_dtensor_is_the_culprit(mesh):
    x, w = _operands(mesh)
    with FaultInjector(Fault("aten::mm", call=0)) as inj, shadow() as sh:
        torch.mm(x, w)
    assert inj.hit == "aten::mm#forward#0"
    assert [r.key for r in sh.culprits()] == ["aten::mm#init#0"]  # no module ran: phase init
