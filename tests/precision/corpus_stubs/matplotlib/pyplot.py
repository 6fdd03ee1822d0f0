"""A stand-in for ``matplotlib.pyplot``: every function (``figure``, ``plot``, ``savefig``, ...) draws nothing."""


def __getattr__(name):
    return lambda *_args, **_kwargs: None
