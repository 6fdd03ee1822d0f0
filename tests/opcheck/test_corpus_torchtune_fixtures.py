"""The tiny Llama 3.2 fixture is what torchtune's full-finetune recipe reads: an HF-format checkpoint that
transformers' own Llama loads, a tiktoken BPE file whose words are reachable by merges, and special tokens
that fit the model's vocabulary given on the recipe's command line."""

import base64
import json

import corpus_fixtures
import corpus_score
import pytest
from corpus_torchtune_fixtures import SIZES, SPECIAL_TOKENS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return corpus_fixtures.make(tmp_path_factory.mktemp("tt"), {"kind": "torchtune_llama3_2", "path": "m"})


def _ranks(tiny):
    lines = (tiny / "original" / "tokenizer.model").read_text().splitlines()
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in lines)}


def test_the_bpe_file_is_a_valid_byte_level_bpe(tiny):
    ranks = _ranks(tiny)
    assert sorted(ranks.values()) == list(range(len(ranks)))  # dense ranks, no duplicate tokens
    assert all(ranks[bytes([b])] == b for b in range(256))  # every byte encodes
    for token, rank in ranks.items():
        if len(token) > 1:  # reachable: token minus its last byte merged earlier, then the byte
            assert ranks[token[:-1]] < rank, token
    assert b" hello" in ranks and b" world" in ranks


def test_tiktoken_encodes_words_as_single_tokens(tiny):
    tiktoken = pytest.importorskip("tiktoken")
    enc = tiktoken.Encoding(
        name="tiny",
        pat_str=r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
        mergeable_ranks=_ranks(tiny),
        special_tokens={},
    )
    ids = enc.encode(" hello world")
    assert [enc.decode([i]) for i in ids] == [" hello", " world"]


def test_special_tokens_follow_the_vocabulary_and_fit_the_model(tiny):
    added = json.loads((tiny / "tokenizer.json").read_text())["added_tokens"]
    n = len(_ranks(tiny))
    assert [t["content"] for t in added] == list(SPECIAL_TOKENS)
    assert [t["id"] for t in added] == list(range(n, n + len(added)))
    assert n + len(added) <= SIZES["vocab_size"]


def test_transformers_llama_loads_the_checkpoint(tiny):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(tiny)
    model = transformers.LlamaForCausalLM(config)
    state = load_file(str(tiny / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == [] and missing in ([], ["lm_head.weight"])  # tied to embed_tokens
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (
        SIZES["num_kv_heads"] * SIZES["embed_dim"] // SIZES["num_heads"],
        SIZES["embed_dim"],
    )


def test_the_truth_command_builds_the_fixture_sizes():
    (truth,) = corpus_score.load_truths(["torchtune_full"])
    given = dict(arg.split("=", 1) for arg in truth.command if "=" in arg)
    assert {k: int(given[f"model.{k}"]) for k in SIZES} == SIZES
    (fixture,) = [f for f in truth.fixtures if f["kind"] == "torchtune_llama3_2"]
    assert given["checkpointer.checkpoint_dir"] == fixture["path"]
