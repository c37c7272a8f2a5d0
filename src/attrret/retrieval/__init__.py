"""Retrieval: the probability index, exact top-K ranking, metrics.

Submodules, named for the commands they implement where they implement one: :mod:`predict`
(``attrret predict``: a gallery into an index, ensembles, incremental), :mod:`rank`
(``attrret rank``: a caption file against an index), :mod:`index` (the on-disk index),
:mod:`topk` (the exact top-K engine and its backends), :mod:`scan` (its compiled loops),
:mod:`ranker` (queries -> scored results), :mod:`priors` (hidden priors), :mod:`metrics` and
:mod:`evaluate`. Nothing heavy is imported here.
"""
