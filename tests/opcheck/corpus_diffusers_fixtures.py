"""Stable Diffusion inputs for diffusers' text-to-image training script (truth "fixtures", kinds
``sd_directory`` and ``captioned_images``): a pipeline directory of configs only (check-ops builds the
models weightless, as ``from_pretrained`` of a directory without weights) and a captioned imagefolder.
Sizes are diffusers' own test sizes (tiny-stable-diffusion-pipe); nothing is downloaded.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

#: CLIP's byte-level alphabet (``bytes_to_unicode``): printable bytes as themselves, the others from U+0100 on
_PRINTABLE = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
_ALPHABET = [chr(b) for b in _PRINTABLE] + [chr(256 + i) for i in range(256 - len(_PRINTABLE))]
_SPECIALS = ["<|startoftext|>", "<|endoftext|>"]
#: the words of the captions, merged to one token each
_WORDS = ["a", "cat", "dog", "on", "mat", "red", "blue", "photo", "of"]
CAPTIONS = ["a photo of a cat", "a red dog", "a blue cat on a mat", "a dog on a mat"]


def _merges() -> List[str]:
    """BPE merges that build each caption word (with CLIP's ``</w>`` word end) from its letters."""
    out: List[str] = []
    for word in _WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair = f"{parts[0]} {parts[1]}"
            if pair not in out:
                out.append(pair)
            parts = [parts[0] + parts[1], *parts[2:]]
    return out


def _clip_tokenizer(path: Path, max_length: int) -> int:
    """CLIPTokenizer's files (vocab.json, merges.txt): the byte alphabet, each letter as a word end, the
    merged caption words, the two specials. Returns the vocabulary size."""
    merges = _merges()
    tokens = _ALPHABET + [c + "</w>" for c in _ALPHABET] + [m.replace(" ", "") for m in merges] + _SPECIALS
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": _SPECIALS[0],
        "eos_token": _SPECIALS[1],
        "unk_token": _SPECIALS[1],
        "pad_token": _SPECIALS[1],
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return len(vocab)


def _write(path: Path, name: str, config: Dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(config, indent=1))


def sd_directory(path: Path, spec: Dict[str, Any]) -> None:
    """``--pretrained_model_name_or_path``: model_index.json and the scheduler, tokenizer, text_encoder, vae
    and unet subfolders, configs only (no weights)."""
    max_length = spec.get("max_length", 16)
    vocab_size = _clip_tokenizer(path / "tokenizer", max_length)
    _write(
        path,
        "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "scheduler": ["diffusers", "DDPMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        },
    )
    _write(
        path / "scheduler",
        "scheduler_config.json",
        {
            "_class_name": "DDPMScheduler",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
        },
    )
    _write(
        path / "text_encoder",
        "config.json",
        {
            "architectures": ["CLIPTextModel"],
            "model_type": "clip_text_model",
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": max_length,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
            "projection_dim": 32,
        },
    )
    _write(
        path / "vae",
        "config.json",
        {
            "_class_name": "AutoencoderKL",
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 64,
            "scaling_factor": 0.18215,
        },
    )
    _write(
        path / "unet",
        "config.json",
        {
            "_class_name": "UNet2DConditionModel",
            "sample_size": 32,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
    )


def captioned_images(path: Path, spec: Dict[str, Any]) -> None:
    """``--dataset_name=./images``: datasets' imagefolder with a metadata.jsonl giving each image's ``text``
    (the script takes the first two columns, image and caption)."""
    from corpus_fixtures import _png

    size = spec.get("size", 64)
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, caption in enumerate(CAPTIONS):
        pixels = rng.integers(0, 256, size=size * size * 3, dtype=np.uint8).tobytes()
        (path / f"{i}.png").write_bytes(_png(size, size, pixels))
        rows.append(json.dumps({"file_name": f"{i}.png", "text": caption}))
    (path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
