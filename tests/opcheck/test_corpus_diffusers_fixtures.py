"""The Stable Diffusion fixtures of diffusers_t2i (corpus_diffusers_fixtures.py), read as the script reads them."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_diffusers_fixtures
import corpus_fixtures


def test_the_clip_tokenizer_reads_each_caption_word_as_one_token(tmp_path):
    transformers = pytest.importorskip("transformers")
    sd = corpus_fixtures.make(tmp_path, {"kind": "sd_directory", "path": "sd"})
    tokenizer = transformers.CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer")
    ids = tokenizer(
        "a photo of a cat", max_length=tokenizer.model_max_length, padding="max_length", truncation=True
    ).input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:7] == [
        "<|startoftext|>",
        "a</w>",
        "photo</w>",
        "of</w>",
        "a</w>",
        "cat</w>",
        "<|endoftext|>",
    ]
    assert len(ids) == 16
    text_encoder = json.loads((sd / "text_encoder" / "config.json").read_text())
    assert max(ids) < text_encoder["vocab_size"]
    assert (text_encoder["bos_token_id"], text_encoder["eos_token_id"]) == (ids[0], ids[6])


def test_the_pipeline_directory_has_each_component_config_and_no_weights(tmp_path):
    sd = corpus_fixtures.make(tmp_path, {"kind": "sd_directory", "path": "sd"})
    index = json.loads((sd / "model_index.json").read_text())
    for part in ("unet", "vae", "scheduler"):
        name = "scheduler_config.json" if part == "scheduler" else "config.json"
        assert json.loads((sd / part / name).read_text())["_class_name"] == index[part][1]
    assert not list(sd.rglob("*.safetensors")) and not list(sd.rglob("*.bin"))
    unet, vae = (json.loads((sd / p / "config.json").read_text()) for p in ("unet", "vae"))
    # the VAE halves the 64-pixel images once per block after the first: the UNet's sample size
    assert 64 // 2 ** (len(vae["block_out_channels"]) - 1) == unet["sample_size"]
    assert vae["latent_channels"] == unet["in_channels"]


def test_the_imagefolder_captions_each_image(tmp_path):
    images = corpus_fixtures.make(tmp_path, {"kind": "captioned_images", "path": "images"})
    rows = [json.loads(line) for line in (images / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == corpus_diffusers_fixtures.CAPTIONS
    for row in rows:
        png = (images / row["file_name"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == (64).to_bytes(4, "big") * 2
