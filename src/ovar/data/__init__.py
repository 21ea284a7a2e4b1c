"""Datasets: list files, class lists, bundled protocol splits, loaders and subsets.

Light modules are re-exported here; the torch-based dataset and loader live in
``ovar.data.dataset`` and ``ovar.data.loader``.
"""

from .labels import humanize, read_class_names, read_labels_file
from .lists import ListFormatError, read_list, resolve, write_list
from .records import VideoRecord

__all__ = ["ListFormatError", "VideoRecord", "humanize", "read_class_names", "read_labels_file", "read_list", "resolve", "write_list"]
