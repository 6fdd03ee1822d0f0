"""The corpus's Hugging Face cache fixtures (corpus_hub_fixtures.py) are read offline by the libraries the
scripts call, the way a user's cache is."""

import corpus_fixtures
import pytest


def test_a_hub_model_fixture_loads_by_its_hub_id_offline(tmp_path):
    """GaLore calls AutoTokenizer.from_pretrained("t5-base"): the cached snapshot answers it."""
    from transformers import AutoConfig, AutoTokenizer

    hub = corpus_fixtures.make(tmp_path, {"kind": "hf_hub_model", "path": "hub", "repo": "google/t5-tiny"})
    tok = AutoTokenizer.from_pretrained("google/t5-tiny", cache_dir=str(hub), local_files_only=True)
    assert tok.decode(tok("hello world")["input_ids"]) == "hello world"
    config = {"model_type": "t5", "d_model": 64, "num_layers": 2, "vocab_size": 64}
    corpus_fixtures.make(
        tmp_path, {"kind": "hf_hub_model", "path": "hub", "repo": "t5-base", "config": config}
    )
    loaded = AutoConfig.from_pretrained("t5-base", cache_dir=str(hub), local_files_only=True)
    assert (loaded.model_type, loaded.d_model, loaded.num_layers) == ("t5", 64, 2)


def test_a_dataset_cache_fixture_reloads_offline_and_streams(tmp_path, monkeypatch):
    """GaLore streams allenai/c4 "en"; LongLoRA loads RedPajama-Data-1T-Sample into --cache_dir: offline,
    datasets reloads what it once prepared."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    rows = [{"text": "hello world", "meta": "{}"}] * 3
    spec = {"kind": "hf_dataset_cache", "path": "cache", "repo": "allenai/c4", "config": "en", "rows": rows}
    cache = corpus_fixtures.make(tmp_path, spec)
    stream = datasets.load_dataset("allenai/c4", "en", split="train", streaming=True, cache_dir=str(cache))
    assert next(iter(stream)) == rows[0]
    spec = dict(spec, repo="togethercomputer/RedPajama-Data-1T-Sample", config="plain_text")
    corpus_fixtures.make(tmp_path, spec)
    loaded = datasets.load_dataset("togethercomputer/RedPajama-Data-1T-Sample", cache_dir=str(cache))
    assert loaded["train"].num_rows == 3 and loaded["train"].column_names == ["text", "meta"]
