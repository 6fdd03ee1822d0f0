"""``FakeData``: random images, the same for the same index in every run (torchvision's seeds a generator with
the index and draws the image in [0, 1))."""

from typing import Any, Callable, Optional, Tuple

import torch


class FakeData(torch.utils.data.Dataset):
    def __init__(
        self,
        size: int = 1000,
        image_size: Tuple[int, int, int] = (3, 224, 224),
        num_classes: int = 10,
        transform: Optional[Callable[[Any], Any]] = None,
        target_transform: Optional[Callable[[Any], Any]] = None,
        random_offset: int = 0,
    ) -> None:
        self.size, self.image_size, self.num_classes = size, image_size, num_classes
        self.transform, self.target_transform, self.random_offset = transform, target_transform, random_offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        if index >= self.size:
            raise IndexError(f"{type(self).__name__} index out of range")
        gen = torch.Generator().manual_seed(index + self.random_offset)
        img = torch.rand(*self.image_size, generator=gen)
        target = int(torch.randint(0, self.num_classes, (1,), generator=gen))
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
