"""The demo's precision part names the injected fault and nothing else."""

from ascend_tools.precision import demo_run


def test_demo_names_the_injected_fault(tmp_path):
    report, injected = demo_run.run(str(tmp_path))
    assert injected == f"{demo_run.FAULT.op}#{demo_run.FAULT.phase}#{demo_run.FAULT.call}"
    names = [c["name"] for c in report.data["culprits"]]
    assert names == [injected]
    # the culprit is located in the model: the MLP of a layer, with a stack into modeling_llama.py
    culprit = report.data["culprits"][0]
    assert culprit["module"].startswith("model.layers.") and culprit["module"].endswith("_proj")
    assert any("modeling_llama.py" in frame for frame in culprit["stack"])
