"""Retrieval: the probability index, exact top-K ranking (blocked matmul or FAISS), metrics.

Submodules: :mod:`index` (on-disk index), :mod:`build` (predict into an index, ensembles,
incremental), :mod:`topk` (exact top-K engine), :mod:`ranker` (queries -> results),
:mod:`priors` (hidden priors), :mod:`metrics` and :mod:`evaluate`, :mod:`pipeline` (rank a
caption file). Nothing heavy is imported here.
"""
