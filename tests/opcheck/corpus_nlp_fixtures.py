"""What ``nlp.load_dataset('wikihow', 'all', data_dir='data/')`` (the ``nlp`` 0.4 package, datasets' 2020
predecessor; pytorch/examples' FSDP T5 script) reads on a machine where it ran once, offline: truth
"fixtures" kinds ``nlp_script_cache`` and ``wikihow_csv``.

nlp fetches a dataset's loading script from its S3 bucket and the files the script downloads into
``$HF_HOME/datasets`` under ``sha256(url)`` names; with no connection it takes those cached files. WikiHow's
articles are a manual download (``wikihowAll.csv`` in ``data_dir``); its train/validation/test split is a
list of titles per split that the script downloads. Both are synthetic here and agree with each other.
"""

import csv
from hashlib import sha256
from pathlib import Path
from typing import Any, Dict, List

CORPUS = Path(__file__).resolve().parents[1] / "data" / "checkops_corpus"
#: nlp.utils.file_utils.S3_DATASETS_BUCKET_PREFIX in nlp 0.4.0
S3_DATASETS = "https://s3.amazonaws.com/datasets.huggingface.co/nlp/datasets"
#: the split title lists nlp_scripts/wikihow.py downloads (its _URLS)
TITLE_LISTS = "https://raw.githubusercontent.com/mahnazkoupaee/WikiHow-Dataset/master/all_{}.txt"
#: articles per split: T5_training.py selects 1,500 train and 300 validation rows
SPLITS = {"train": 1600, "val": 320, "test": 16}


def cached_name(url: str) -> str:
    """nlp.utils.file_utils.hash_url_to_filename(url) for a file cached offline (no ETag)."""
    return sha256(url.encode("utf-8")).hexdigest() + (".py" if url.endswith(".py") else "")


def _titles() -> Dict[str, List[str]]:
    titles: Dict[str, List[str]] = {}
    start = 0
    for split, count in SPLITS.items():
        titles[split] = [f"How to Fold Paper Number {i}" for i in range(start, start + count)]
        start += count
    return titles


def nlp_script_cache(path: Path, spec: Dict[str, Any]) -> None:
    """``path`` is nlp's HF_DATASETS_CACHE: the loading script ``spec["script"]`` (relative to the corpus,
    kept byte-for-byte) under its S3 URL's name, and wikihow's split title lists in ``downloads/``, written
    as the authors' files are (titles without spaces, one a line)."""
    script = CORPUS / spec["script"]
    url = f"{S3_DATASETS}/{script.stem}/{script.name}"
    path.mkdir(parents=True, exist_ok=True)
    (path / cached_name(url)).write_bytes(script.read_bytes())
    downloads = path / "downloads"
    downloads.mkdir(exist_ok=True)
    for split, titles in _titles().items():
        lines = "".join(title.replace(" ", "") + "\n" for title in titles)
        (downloads / cached_name(TITLE_LISTS.format(split))).write_text(lines)


def wikihow_csv(path: Path, spec: Dict[str, Any]) -> None:
    """``wikihowAll.csv``: the columns wikihow.py's "all" config checks (headline, title, text), one article
    per title; each headline is shorter than 0.75 of its text, so the script's filter keeps every row."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["headline", "title", "text"])
        for titles in _titles().values():
            for i, title in enumerate(titles):
                steps = " ".join(
                    f"Step {k}: fold the sheet in half along line {k + i % 7}." for k in range(8)
                )
                writer.writerow([f"Fold the sheet {i % 5 + 2} times.", title, steps])
