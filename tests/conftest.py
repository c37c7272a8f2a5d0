"""Shared test setup: no network model hub in tests."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
