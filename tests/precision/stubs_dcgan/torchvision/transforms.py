"""``ToTensor`` of a tensor already in [0, 1] (what the stand-in ``FakeData`` gives), ``Compose``."""

from typing import Any, Callable, Sequence


class ToTensor:
    def __call__(self, pic: Any) -> Any:
        return pic


class Compose:
    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x
