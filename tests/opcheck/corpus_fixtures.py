"""Tiny local inputs the corpus scripts read (tests/data/checkops_corpus/truth/*.json "fixtures").

Binary inputs are generated here rather than committed; nothing is downloaded. Each kind writes at a
path relative to the script's working directory.
"""

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import corpus_diffusers_fixtures
import corpus_hub_fixtures
import corpus_mistral_fixtures
import corpus_nanochat_fixtures
import corpus_nlp_fixtures
import corpus_torchtune_fixtures
import numpy as np

_VOCAB = "the a cat dog sat on mat hi hello world say add one two good day see you bye no yes"
_WORDS = _VOCAB.split()
_TEXT = " ".join(_WORDS * 40) + "\n"


def _u16_tokens(path: Path, spec: Dict[str, Any]) -> None:
    """nanoGPT's data/<dataset>/{train,val}.bin: a flat uint16 array of GPT-2 token ids."""
    rng = np.random.default_rng(0)
    rng.integers(0, 50257, size=spec.get("tokens", 4096), dtype=np.uint16).tofile(path)


def _llmc_tokens(path: Path, spec: Dict[str, Any]) -> None:
    """llm.c's token file: a 256 x int32 header (magic 20240520, version 1, token count), then uint16."""
    n = spec.get("tokens", 4096)
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (20240520, 1, n)
    rng = np.random.default_rng(0)
    path.write_bytes(header.tobytes() + rng.integers(0, 50257, size=n, dtype=np.uint16).tobytes())


def _packed_tokens(path: Path, spec: Dict[str, Any]) -> None:
    """lit_gpt's PackedDataset file: b"LITPKDS", version 1 (<Q), dtype code 8 = uint16 (<B), chunk size
    (<Q), then the tokens (TinyLlama reads micro-batches of 8 blocks of 2,049)."""
    n = spec.get("tokens", 8 * 2049)
    header = b"LITPKDS" + struct.pack("<QBQ", 1, 8, n)
    rng = np.random.default_rng(0)
    path.write_bytes(header + rng.integers(0, 32000, size=n, dtype=np.uint16).tobytes())


#: a chat model's template (``"chat_template": true`` in the spec), in the role-prefixed shape of MiniCPM-2B's
_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] + ' ' + m['content'] + ' ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant ' }}{% endif %}"
)


def _hf_llama(path: Path, spec: Dict[str, Any]) -> None:
    """A two-layer Llama config and a word-level fast tokenizer built from a 20-word vocabulary (with a chat
    template where the spec asks for one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    path.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(_WORDS)))}
    size = spec.get("vocab_size")  # a script that checks the real model's vocabulary (Chinese-LLaMA: 32000)
    vocab.update({f"<extra_{i}>": i for i in range(len(vocab), size or 0)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "<unk>",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "model_max_length": 64,
                **({"chat_template": _CHAT_TEMPLATE} if spec.get("chat_template") else {}),
            }
        )
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 64,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 3,
        "torch_dtype": "float32",
    }
    config["vocab_size"] = size or config["vocab_size"]
    (path / "config.json").write_text(json.dumps(config, indent=1))
    _sentencepiece_model(path / "tokenizer.model", size)


def _sentencepiece_model(path: Path, size: Optional[int] = None) -> None:
    """The slow tokenizer's file (``LlamaTokenizer``, ``use_fast=False``) over the same words, as every Llama
    checkpoint ships one, padded to ``size`` pieces if given; written where sentencepiece is installed (the
    corpus venv: only the trace reads it)."""
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        return
    with io.BytesIO() as out:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([_TEXT] * 20),
            model_writer=out,
            vocab_size=60,
            model_type="word",
            normalization_rule_name="identity",
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            hard_vocab_limit=False,
            minloglevel=2,
        )
        model = sentencepiece_model_pb2.ModelProto.FromString(out.getvalue())
    for i in range(len(model.pieces), size or 0):
        model.pieces.add(piece=f"<extra_{i}>", score=-1e9, type=model.pieces[-1].NORMAL)
    path.write_bytes(model.SerializeToString())


def _png(width: int, height: int, rgb: bytes) -> bytes:
    """An 8-bit RGB PNG (the format's IHDR/IDAT/IEND chunks, no filter)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rgb[y * width * 3 : (y + 1) * width * 3] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _image_folder(path: Path, spec: Dict[str, Any]) -> None:
    """torchvision ImageFolder layout: two classes of two 32x32 images."""
    rng = np.random.default_rng(0)
    for cls in ("class_a", "class_b"):
        (path / cls).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            pixels = rng.integers(0, 256, size=32 * 32 * 3, dtype=np.uint8).tobytes()
            (path / cls / f"{i}.png").write_bytes(_png(32, 32, pixels))


def _text(path: Path, spec: Dict[str, Any]) -> None:
    path.write_text(spec["content"])


def _directory(path: Path, spec: Dict[str, Any]) -> None:
    """An empty directory the launch script makes before the run (``mkdir -p ${output_dir}``)."""
    path.mkdir(parents=True, exist_ok=True)


def _text_corpus(path: Path, spec: Dict[str, Any]) -> None:
    """Plain text long enough for a character-level model with a 1,024 context."""
    path.write_text(_TEXT * 4)


KINDS: Dict[str, Callable[[Path, Dict[str, Any]], None]] = {
    "u16_tokens": _u16_tokens,
    "llmc_tokens": _llmc_tokens,
    "packed_tokens": _packed_tokens,
    "hf_llama": _hf_llama,
    "image_folder": _image_folder,
    "text": _text,
    "text_corpus": _text_corpus,
    "directory": _directory,
    "hf_hub_model": corpus_hub_fixtures.hf_hub_model,
    "hf_dataset_cache": corpus_hub_fixtures.hf_dataset_cache,
    "nanochat_base_dir": corpus_nanochat_fixtures.nanochat_base_dir,
    "nlp_script_cache": corpus_nlp_fixtures.nlp_script_cache,
    "mistral_consolidated": corpus_mistral_fixtures.mistral_consolidated,
    "wikihow_csv": corpus_nlp_fixtures.wikihow_csv,
    "sd_directory": corpus_diffusers_fixtures.sd_directory,
    "captioned_images": corpus_diffusers_fixtures.captioned_images,
    "torchtune_llama3_2": corpus_torchtune_fixtures.torchtune_llama3_2,
}


def make(cwd: Path, spec: Dict[str, Any]) -> Path:
    """Write one fixture at spec["path"] relative to the script's working directory."""
    path = (cwd / spec["path"]).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    KINDS[spec["kind"]](path, spec)
    return path
