"""A stand-in for matplotlib (not installed in CI): ``use`` does nothing (tests/precision/corpus_stubs)."""


def use(*_args, **_kwargs):
    return None
