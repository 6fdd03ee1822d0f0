"""The fsdp_t5 corpus script's data fixtures (corpus_nlp_fixtures.py) are what nlp 0.4.0 reads offline: its
cached wikihow loading script, the split title lists that script downloads, and the manual wikihowAll.csv."""

import os
import subprocess
import sys

import corpus_fixtures
import corpus_nlp_fixtures
import pytest

LOAD = """
from nlp import load_dataset
dataset = load_dataset("wikihow", "all", data_dir="data/")
print(*(dataset[split].num_rows for split in ("train", "validation", "test")))
print(dataset["validation"][0]["title"])
"""


def test_cached_name_is_nlps_own_name_for_a_url():
    file_utils = pytest.importorskip("nlp.utils.file_utils")
    for url in ("https://example.com/a.txt", corpus_nlp_fixtures.S3_DATASETS + "/wikihow/wikihow.py"):
        assert corpus_nlp_fixtures.cached_name(url) == file_utils.hash_url_to_filename(url)


def test_nlp_prepares_wikihow_offline_from_the_fixtures(tmp_path):
    """T5_training.py selects 1,500 train and 300 validation articles: nlp's own wikihow script keeps every
    synthetic article (none filtered as too short) and splits them by the title lists."""
    pytest.importorskip("nlp")
    for spec in (
        {"kind": "nlp_script_cache", "path": "hf_home/datasets", "script": "nlp_scripts/wikihow.py"},
        {"kind": "wikihow_csv", "path": "data/wikihowAll.csv"},
    ):
        corpus_fixtures.make(tmp_path, spec)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"))
    proc = subprocess.run(
        [sys.executable, "-c", LOAD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts, title = proc.stdout.strip().splitlines()[-2:]
    assert counts.split() == [str(n) for n in corpus_nlp_fixtures.SPLITS.values()]
    assert title.startswith("How to Fold Paper Number ")
