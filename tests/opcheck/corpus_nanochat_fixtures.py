"""nanochat's base directory (truth "fixtures", kind ``nanochat_base_dir``; NANOCHAT_BASE_DIR points at it):
what ``scripts/tok_train.py`` and ``nanochat/dataset.py`` leave in ``~/.cache/nanochat`` before
``base_train.py`` runs, at byte level. Written where tiktoken and pyarrow are installed (the corpus venv:
only the trace reads it); nothing is downloaded.
"""

import pickle
from pathlib import Path
from typing import Any, Dict

#: nanochat/tokenizer.py's SPECIAL_TOKENS and SPLIT_PATTERN (karpathy/nanochat, the corpus copy)
SPECIAL_TOKENS = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
]
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""


def nanochat_base_dir(path: Path, spec: Dict[str, Any]) -> None:
    """``tokenizer/tokenizer.pkl``: a pickled tiktoken Encoding over the 256 bytes (no merges), the special
    tokens after them; ``tokenizer/token_bytes.pt``: each id's length in bytes, 0 for the specials (as
    tok_train.py writes it, read by the bits-per-byte eval); ``base_data_climbmix/shard_0000{0,1}.parquet``:
    documents in a ``text`` column, the last shard being the validation split."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        import tiktoken
        import torch
    except ImportError:
        return
    from corpus_fixtures import _TEXT

    tokenizer = path / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    ranks = {bytes([i]): i for i in range(256)}
    specials = {token: 256 + i for i, token in enumerate(SPECIAL_TOKENS)}
    enc = tiktoken.Encoding(
        name="nanochat-fixture", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )
    (tokenizer / "tokenizer.pkl").write_bytes(pickle.dumps(enc))
    token_bytes = torch.tensor([1] * 256 + [0] * len(specials), dtype=torch.int32)
    torch.save(token_bytes, tokenizer / "token_bytes.pt")
    data = path / "base_data_climbmix"
    data.mkdir(parents=True, exist_ok=True)
    docs = [_TEXT[i * 7 :] for i in range(spec.get("docs", 16))]
    for shard in range(2):
        pq.write_table(pa.table({"text": docs}), data / f"shard_{shard:05d}.parquet", row_group_size=4)
