"""A stand-in for torchvision (not installed in CI: PyPI's wheel does not load beside the CPU torch), with what
pytorch/examples' ``dcgan/main.py`` uses with ``--dataset fake``: ``datasets.FakeData``, ``transforms.ToTensor``
and ``utils.save_image``. The images are made by torch, as torchvision's ``FakeData`` makes them (a generator
seeded by the index), so two runs read the same data."""

from . import datasets, transforms, utils

__all__ = ["datasets", "transforms", "utils"]
