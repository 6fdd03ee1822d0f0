"""Hugging Face caches for corpus scripts that name a hub id (truth "fixtures", kinds ``hf_hub_model`` and
``hf_dataset_cache``): what a user who has run the script once has on disk, in the layout the libraries
read offline (``HF_HUB_OFFLINE=1``, as traces run). Nothing is downloaded; the content is tiny.
"""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

#: the snapshot a fixture's refs/main points at (any 40-hex commit id reads the same offline)
SNAPSHOT = "0" * 40


def hf_hub_model(path: Path, spec: Dict[str, Any]) -> None:
    """``from_pretrained("t5-base")`` offline: ``<HF_HUB_CACHE>/models--<repo>/snapshots/<sha>/`` holding the
    ``hf_llama`` fixture's tokenizer and config (``"config"`` in the spec replaces the config, for another
    architecture; ``"aliases"`` copies a file under the name another tokenizer class reads), and
    ``refs/main`` naming the snapshot, as ``huggingface_hub`` writes them."""
    from corpus_fixtures import _hf_llama

    repo_dir = path / ("models--" + spec["repo"].replace("/", "--"))
    snapshot = repo_dir / "snapshots" / SNAPSHOT
    _hf_llama(snapshot, spec)
    if "config" in spec:
        (snapshot / "config.json").write_text(json.dumps(spec["config"], indent=1))
    for name, written in spec.get(
        "aliases", {}
    ).items():  # T5Tokenizer reads the sentencepiece model as spiece.model
        if (snapshot / written).exists():
            shutil.copyfile(snapshot / written, snapshot / name)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(SNAPSHOT)


def _rows(spec: Dict[str, Any]) -> List[Dict[str, Any]]:
    if "rows" in spec:
        return list(spec["rows"])
    from corpus_fixtures import _TEXT

    return [{"text": _TEXT[i * 40 :]} for i in range(spec.get("n_rows", 8))]


def hf_dataset_cache(path: Path, spec: Dict[str, Any]) -> None:
    """``load_dataset("allenai/c4", "en", split="train", streaming=True)`` offline: datasets reloads a hub
    dataset it once prepared from ``<cache>/<namespace>___<name>/<config>/<version>/<hash>/`` (its Arrow
    files and dataset_info.json). The files are prepared by datasets itself from the spec's rows. Written
    where datasets is installed (the corpus venv: only the trace reads it)."""
    try:
        import datasets
    except ImportError:
        return
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.json.json import Json

    datasets.disable_progress_bars()

    namespace, _, name = spec["repo"].rpartition("/")
    config = spec.get("config", "default")
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp, "rows.jsonl")
        rows.write_text("".join(json.dumps(r) + "\n" for r in _rows(spec)))
        splits = {split: str(rows) for split in spec.get("splits", ["train"])}
        builder = Json(cache_dir=tmp, dataset_name=name, config_name=config, data_files=splits)
        builder.download_and_prepare()
        # a local builder writes <name>/<config>-<hash>/<version>; a hub one <ns>___<name>/<config>/<version>/<hash>
        prepared = Path(builder.cache_dir)
        config_hash = prepared.parent.name.rpartition("-")[2]
        folder = "___".join([*filter(None, [namespace]), camelcase_to_snakecase(name)])
        target = path / folder / config / prepared.name / config_hash
        shutil.copytree(prepared, target, ignore=shutil.ignore_patterns("*.lock"))
