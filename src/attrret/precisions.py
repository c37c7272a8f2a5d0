"""The names of the precisions a model can run in, without importing torch.

The index header, the CLI's ``--precision`` choices and its help read these; the torch side
(:mod:`attrret.classifiers.runtime`) resolves ``auto`` and runs them.
"""

from __future__ import annotations

__all__ = ["PRECISION_NAMES", "PRECISIONS", "PRECISION_ENV", "MIXED_TOLERANCE"]

#: What can actually run, and what checkpoints and index headers record.
PRECISION_NAMES = ("fp32", "bf16", "fp16")
#: What a user can ask for: ``auto`` picks per device (runtime.resolve_precision).
PRECISIONS = ("auto", *PRECISION_NAMES)
#: The environment variable read when no precision is given (``--precision`` wins over it).
PRECISION_ENV = "ATTRRET_PRECISION"

#: How far a probability computed in bf16 or fp16 may be from the same model's fp32 one (absolute,
#: per index entry). bf16 keeps 8 significant bits, so a logit of 5 is off by up to 0.02 and a
#: probability near 0.5 moves by a few hundredths after a dozen layers; the tests assert this
#: bound between ``predict --precision bf16`` and ``--precision fp32`` on the same gallery
#: (tests/classifiers/test_precision.py), and docs/precision.md states it.
MIXED_TOLERANCE = 0.1
