"""``attrret data import``: other datasets' own layouts -> a Track-2 folder ``train`` and ``predict`` read.

One module per source format, each with a ``read(src, options) -> Source`` function that
parses the format and maps its labels onto attrret's groups; :mod:`.build`
(:func:`~attrret.data.importers.build.import_dataset`) does everything else once: split,
captions, copying, the atomic write. :data:`FORMATS` is the registry: a new format is one
module and one row. It names modules rather than importing them, so ``attrret --help``
stays instant.
"""

from __future__ import annotations

from attrret.data.importers.source import Format, ImportOptions, Source, SourceImage

__all__ = ["FORMATS", "Format", "ImportOptions", "Source", "SourceImage"]

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("pa100k", "attrret.data.importers.pa100k",
           "PA-100K: annotation.mat + its image folder; keeps PA-100K's train/val/test split"),
    Format("peta", "attrret.data.importers.peta",
           "PETA release: <subset>/archive/ images + Label.txt; split by identity"),
    Format("csv", "attrret.data.importers.csv",
           "a CSV: image column + one column per group (class names, empty = unknown)"),
)}
