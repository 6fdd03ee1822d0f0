"""A stand-in for requests (not installed in CI): nothing may be downloaded at test time, so ``get`` refuses."""


def get(*_args, **_kwargs):
    raise RuntimeError("requests stand-in: no downloads in the tests")
