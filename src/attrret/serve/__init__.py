"""``attrret serve``: a small web app over a :class:`attrret.search.Searcher`.

The app is a thin HTTP layer; every answer is the Searcher's (parse, search, attributes,
image paths). ``create_app(searcher, token=...)`` builds it; ``attrret serve`` runs it with
uvicorn. See ``app.py`` for the routes and the safety rules (loopback by default, a token for
anything else, a Content-Security-Policy on every response, names looked up in the index).
"""

from __future__ import annotations

from attrret.serve.app import LOOPBACK_HOSTS, THUMB_MAX, THUMB_MIN, check_token, create_app, host_allowed, is_loopback

__all__ = ["create_app", "is_loopback", "host_allowed", "LOOPBACK_HOSTS", "check_token", "THUMB_MIN", "THUMB_MAX"]
