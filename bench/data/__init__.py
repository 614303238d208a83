"""Datasets as uint8 tensors: mnist, fashion_mnist, cifar10, celeba, triangles, folder:PATH."""

from bench.data.base import SPLITS, Dataset, DatasetInfo, ImageSplit, default_data_root
from bench.data.registry import dataset_names, get_dataset, register_dataset

__all__ = [
    "SPLITS",
    "Dataset",
    "DatasetInfo",
    "ImageSplit",
    "default_data_root",
    "dataset_names",
    "get_dataset",
    "register_dataset",
]
