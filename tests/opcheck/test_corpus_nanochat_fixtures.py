"""The nanochat base-directory fixture is what nanochat's tokenizer and data loader read."""

import pickle

import corpus_fixtures
import pytest


def test_nanochat_base_dir_tokenizer_and_shards(tmp_path):
    pytest.importorskip("tiktoken")
    pq = pytest.importorskip("pyarrow.parquet")
    torch = pytest.importorskip("torch")
    base = corpus_fixtures.make(tmp_path, {"kind": "nanochat_base_dir", "path": "nc"})
    enc = pickle.loads((base / "tokenizer" / "tokenizer.pkl").read_bytes())
    ids = enc.encode_ordinary("hello world")
    assert ids == list(b"hello world") and enc.decode(ids) == "hello world"  # byte level, no merges
    assert enc.encode_single_token("<|bos|>") == 256
    token_bytes = torch.load(base / "tokenizer" / "token_bytes.pt")
    assert token_bytes.shape == (enc.n_vocab,) and int(token_bytes[65]) == 1 and int(token_bytes[256]) == 0
    shards = sorted((base / "base_data_climbmix").glob("shard_*.parquet"))
    assert [s.name for s in shards] == ["shard_00000.parquet", "shard_00001.parquet"]
    table = pq.ParquetFile(shards[0])
    assert table.num_row_groups >= 1 and table.read_row_group(0).column("text").to_pylist()[0].startswith(
        "the a"
    )
