"""The FastAPI app behind ``attrret serve``: a page, a JSON API and the index's images.

Routes (every answer comes from the :class:`~attrret.search.Searcher`):

- ``GET /``: the search page (``static/index.html``; its JS and CSS are files under ``/static/``,
  so the page runs offline and under a strict Content-Security-Policy: no inline script);
- ``GET /api/search?q=&k=&kind=&camera=&after=&before=&where=&group_by=``: ``Searcher.search(q, k, kind, filters, group_by).to_json()``;
- ``GET /api/parse?q=``: ``Searcher.parse(q)``;
- ``GET /api/schema``: the groups of each subject and the multi-label groups (``families``:
  name -> its classes), so the page shows ``upper_color_red: yes`` as "upper_color: red";
- ``GET /api/images/{name}/attributes``: ``Searcher.attributes(name)``;
- ``GET /images/{name}[?size=N]``: the image file, or a JPEG thumbnail fitting N x N;
- ``GET /api/similar?image=NAME&k=K``: find-similar (with the same filters as search);
- ``GET /healthz``: ``{"status": "ok", "images": N, "meta": [metadata columns]}``; ``/docs``: FastAPI's OpenAPI page.

Safety rules:

- a name is looked up in the index and the file served is the index's recorded source path
  (``Searcher.image_file``); a path is never taken from the request, so ``..%2Fx``,
  ``%2Fetc%2Fpasswd`` or any name the index does not hold is a 404;
- the file served is the one indexed: it is opened without following a symlink in its last
  component (``O_NOFOLLOW``), its real path must still be the recorded (resolved) path, so no
  directory on the way was swapped for a symlink, and its size and modification time must be
  those recorded at indexing time; otherwise 404 ("re-run attrret predict"). The bytes are read
  from the descriptor that was checked, so the file cannot be swapped in between;
- ``allowed_hosts``: the ``Host`` header must name one of them (a loopback server without a
  token accepts only localhost names and loopback addresses by default), so a page on another
  site cannot reach it through DNS rebinding; any other Host gets a 400;
- no answer tells clients where files are on the server: the attributes record has no
  ``path`` unless the operator asks (``show_paths``);
- with a token, every route except the page, its static files, ``/healthz`` and the docs
  needs it (``Authorization: Bearer T`` or ``?token=T``), compared in constant time; deny by
  default, so a route added later is guarded too;
- every response carries a Content-Security-Policy (``default-src 'self'``), ``nosniff``,
  ``no-referrer`` (a ``?token=`` URL never leaks through a Referer) and ``frame-ancestors 'none'``;
- queries over ``MAX_QUERY_CHARS``, ``k`` outside 1..``MAX_K``, unknown kinds and thumbnail sizes
  outside ``THUMB_MIN``..``THUMB_MAX`` get a 422 with ``{"detail": "<one sentence>"}``.

Search endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so
concurrent requests call ``Searcher.search`` concurrently and the Searcher gathers them into
one top-K call (micro-batching). Responses are serialised with ``json.dumps`` directly (the
Searcher's JSON is already plain data; FastAPI's ``jsonable_encoder`` would walk it again).
"""

from __future__ import annotations

import errno
import hmac
import io
import os
import stat
import json
import mimetypes
import threading
from collections.abc import Sequence
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps

from attrret.errors import AttrretError, CheckpointError
from attrret.retrieval.filters import parse_filters
from attrret.search import MAX_K, MAX_QUERY_CHARS, UnknownImage

__all__ = ["create_app", "is_loopback", "check_token", "host_allowed", "LOOPBACK_HOSTS", "THUMB_MIN", "THUMB_MAX", "CSP", "KINDS"]

#: Thumbnail sizes (``?size=N``: the JPEG fits N x N) the server agrees to make.
THUMB_MIN, THUMB_MAX = 16, 1024
THUMB_QUALITY = 82
#: Thumbnails kept in memory (LRU, by source path, its mtime and size, and N); ~10 KB each.
THUMB_CACHE = 2048
KINDS = ("pedestrian", "vehicle")

#: The page's policy: its own scripts, styles and images only (thumbnails are same-origin;
#: data: for the favicon), nothing inline, no frames, no plugins, no <base> tricks.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: FastAPI's Swagger UI (``/docs``) is an inline script that loads its JS and CSS from a CDN;
#: it gets this looser policy, and only it.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_COMMON = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"), (b"cross-origin-resource-policy", b"same-origin")]
PAGE_HEADERS = [(b"content-security-policy", CSP.encode()), *_COMMON]
DOCS_HEADERS = [(b"content-security-policy", DOCS_CSP.encode()), *_COMMON]

#: Paths anyone may fetch without the token: the page and its files hold no data; /healthz
#: says only that the server is up and how many images it has; the docs describe the API.
OPEN_PATHS = frozenset({"/", "/healthz", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback one (127.0.0.0/8, ::1).

    ``localhost`` counts when it resolves only to loopback addresses; ``0.0.0.0``, ``::`` and
    any other interface do not. A host that does not resolve is not loopback.
    """
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addrs = {info[4][0].split("%")[0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)


def check_token(token: str) -> None:
    """Refuse a token that cannot travel in an ``Authorization`` header and a URL as typed:
    empty, or anything but printable ASCII without spaces. Raises ``OptionError``."""
    from attrret.errors import OptionError

    if not token:
        raise OptionError("the token is empty; give a real secret or none")
    if not all("!" <= c <= "~" for c in token):
        raise OptionError("the token must be printable ASCII without spaces (letters, digits, punctuation), "
                          "e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(24))'")


def _static_dir() -> Path:
    return Path(str(resources.files("attrret.serve") / "static"))


class _Guard:
    """ASGI middleware: security headers on every response; the token on every guarded path.

    Pure ASGI (not ``BaseHTTPMiddleware``): it adds a few header tuples to the response start
    and costs next to nothing per request.
    """

    def __init__(self, app: Any, token: str | None, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.token = token.encode("ascii") if token else None
        self.allowed_hosts = allowed_hosts  # None: any Host

    def authorised(self, scope: dict) -> bool:
        assert self.token is not None
        given: bytes | None = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                scheme, _, cred = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = cred.strip()
                break
        if given is None:
            qs = scope.get("query_string", b"").decode("latin-1")
            for key, value in parse_qsl(qs, keep_blank_values=True):
                if key == "token":
                    given = value.encode("utf-8", "surrogateescape")
                    break
        return given is not None and hmac.compare_digest(given, self.token)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = DOCS_HEADERS if path == "/docs" or path.startswith("/docs/") else PAGE_HEADERS

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        if self.allowed_hosts is not None and not host_allowed(_header(scope, b"host"), self.allowed_hosts):
            detail = ("this server answers only requests addressed to " + ", ".join(sorted(self.allowed_hosts))
                      + " (the Host header); add the name with --allowed-hosts")
            await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send_with_headers)
            return
        guarded = not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))
        if self.token is not None and guarded and not self.authorised(scope):
            detail = "missing or wrong token: send the header 'Authorization: Bearer TOKEN' or add ?token=TOKEN"
            response = JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send_with_headers)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            # An unexpected error still answers with the headers (the outer error middleware
            # sees the response started, logs the traceback and sends nothing more).
            if not started:
                await JSONResponse({"detail": "internal server error"}, status_code=500)(scope, receive, tracked)
            raise


#: Host names a loopback server accepts by default: the names that can only mean this machine.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether the ``Host`` header ``host`` (``name``, ``name:port``, ``[v6]:port``) names one of
    ``allowed`` (lower-case names or addresses; ``*`` allows any). Any ``127.x.x.x`` address
    counts as ``127.0.0.1``, and ``*.localhost`` as ``localhost`` (RFC 6761: always loopback)."""
    import ipaddress

    if "*" in allowed:
        return True
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not name:
        return False
    if name in allowed:
        return True
    if name.endswith(".localhost") and "localhost" in allowed:
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    return addr.is_loopback and ("127.0.0.1" in allowed if addr.version == 4 else "::1" in allowed)


class _StaleFile(Exception):
    """The file at an image's recorded path is not the one that was indexed."""


def _open_indexed(record: dict) -> bytes:
    """The bytes of the file ``record`` (``Searcher.image_file``) describes, read from a
    descriptor opened without following a symlink and checked to be that very file; raises
    :class:`_StaleFile` or ``OSError``."""
    path = record["path"]
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise _StaleFile("is now a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _StaleFile("is not a regular file")
        if os.path.realpath(path) != os.path.normpath(path):
            raise _StaleFile("is now reached through a symbolic link")
        size, mtime = record.get("size"), record.get("mtime_ns")
        if (isinstance(size, int) and st.st_size != size) or (isinstance(mtime, int) and st.st_mtime_ns != mtime):
            raise _StaleFile("changed since it was indexed")
        return f.read()


def _json(data: Any, status: int = 200, *, cache: str = "no-store") -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, media_type="application/json", headers={"Cache-Control": cache})


def _check_query(q: str) -> None:
    if len(q) > MAX_QUERY_CHARS:
        raise HTTPException(422, f"query is {len(q):,} characters long; the limit is {MAX_QUERY_CHARS:,}")


class _Thumbs:
    """JPEG thumbnails, made on demand and kept in a small LRU (thread-safe)."""

    def __init__(self, capacity: int = THUMB_CACHE) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, record: dict, size: int, read: Any) -> bytes:
        """The thumbnail of the indexed file ``record``, made from ``read()`` (its checked bytes)
        when not cached; keyed by what the index recorded, which ``read`` verifies."""
        key = (record["path"], record.get("mtime_ns"), record.get("size"), size)
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        data = _make_thumb(io.BytesIO(read()), size)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data


def _make_thumb(source: Any, size: int) -> bytes:
    with Image.open(source) as im:
        im.draft("RGB", (size, size))  # JPEG: let the decoder skip detail the thumbnail drops
        im = ImageOps.exif_transpose(im)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGBA").convert("RGB") if "A" in im.getbands() or im.mode == "P" else im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


def create_app(searcher: Any, *, token: str | None = None, title: str = "attrret",
               allowed_hosts: Sequence[str] | None = None, show_paths: bool = False) -> FastAPI:
    """The app over ``searcher`` (an opened :class:`attrret.search.Searcher`).

    ``token``: when given, every guarded route needs it (see the module doc). It must be
    printable ASCII without spaces (:func:`check_token`): it travels in an HTTP header and a URL.
    ``allowed_hosts``: the Host names it answers (None: any; ``attrret serve`` gives the
    loopback names on a loopback address without a token). ``show_paths``: put the server's
    file paths in the attributes record (off: clients are not told where files are).
    """
    hosts = frozenset(h.strip().lower().strip("[]") for h in allowed_hosts) if allowed_hosts is not None else None
    if token is not None:
        check_token(token)
    static = _static_dir()
    page = (static / "index.html").read_bytes()
    thumbs = _Thumbs()
    app = FastAPI(title=f"{title} search", version="1", redoc_url=None,
                  description="Attribute-based text-to-image retrieval: the parse of a query, its ranked images "
                              "and why, the predicted attributes of an image, and the images themselves.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # One sentence, as every other error here: "k: Input should be a valid integer".
        parts: list[str] = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path"))
            said = plain.get(where, f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
            if err.get("type") == "missing":
                said = f"{where} is required" + (": the text to search for" if where == "q" else "")
            if said not in parts:
                parts.append(said)
        return _json({"detail": "; ".join(parts) or "invalid request"}, 422)

    plain = {"k": f"k must be a whole number from 1 to {MAX_K:,}",
             "size": f"size must be a whole number from {THUMB_MIN} to {THUMB_MAX} (or left out for the file itself)"}

    @app.exception_handler(CheckpointError)
    async def _index_broken(request: Request, exc: CheckpointError) -> Response:
        return _json({"detail": f"the index cannot be read: {exc}"}, 503)

    @app.exception_handler(AttrretError)
    async def _domain(request: Request, exc: AttrretError) -> Response:
        return _json({"detail": str(exc)}, 422)

    @app.get("/", include_in_schema=False)
    def index_page() -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(static / "favicon.svg", media_type="image/svg+xml")

    # The Searcher looks for a replaced index before every answer (one stat of header.json), so
    # the count, the images and their attributes are the new index's as soon as ``attrret
    # predict`` swapped it.

    @app.get("/healthz", summary="Liveness: the server is up and how many images it serves")
    def healthz() -> Response:
        meta = searcher.index.meta
        return _json({"status": "ok", "images": len(searcher), "meta": list(meta.names) if meta is not None else []})

    @app.get("/api/search", summary="Parse a query and return its top-k images, with what matched and what conflicted")
    def search(
        q: str = Query(..., description=f"The query, any text up to {MAX_QUERY_CHARS:,} characters."),
        k: int = Query(10, description=f"Results to return, 1..{MAX_K:,}."),
        kind: str | None = Query(None, description="pedestrian | vehicle; empty or absent: the kind the query names."),
        camera: str | None = Query(None, description="Only these cameras, comma-separated (image metadata)."),
        after: str | None = Query(None, description="Only images at or after this ISO 8601 time (without a zone: UTC)."),
        before: str | None = Query(None, description="Only images at or before this ISO 8601 time."),
        where: list[str] = Query([], description="COLUMN=VALUE[,VALUE...] on a metadata column (e.g. track=17); repeatable."),
        group_by: str | None = Query(None, description="The best image per value of this metadata column (e.g. track)."),
    ) -> Response:
        _check_query(q)
        if not 1 <= k <= MAX_K:
            raise HTTPException(422, f"k is {k}; {plain['k']}")
        if kind in ("", "any"):
            kind = None
        if kind is not None and kind not in KINDS:
            raise HTTPException(422, f"kind is {kind!r}; it must be one of {', '.join(KINDS)} (or left out)")
        filters = parse_filters(camera, after, before, where)  # OptionError: one 422 sentence
        try:
            result = searcher.search(q, k=k, kind=kind, filters=filters, group_by=group_by or None)
        except CheckpointError:
            raise
        except (ValueError, AttrretError) as exc:  # the Searcher's own bounds, should ours ever drift
            raise HTTPException(422, str(exc)) from None
        return _json(result.to_json())

    @app.get("/api/similar", summary="The top-k images whose predicted attributes are closest to an image of the index")
    def similar(
        image: str = Query(..., description="The name of an image of the index: the example."),
        k: int = Query(10, description=f"Results to return, 1..{MAX_K:,}."),
        groups: str | None = Query(None, description="Compare only these groups, comma-separated (default: every group of its kind)."),
        q: str | None = Query(None, description="A query whose stated groups override the example's (e.g. 'with a backpack')."),
        camera: str | None = Query(None, description="Only these cameras, comma-separated."),
        after: str | None = Query(None, description="Only images at or after this ISO 8601 time."),
        before: str | None = Query(None, description="Only images at or before this ISO 8601 time."),
        where: list[str] = Query([], description="COLUMN=VALUE[,VALUE...]; repeatable."),
        group_by: str | None = Query(None, description="The best image per value of this metadata column."),
    ) -> Response:
        if q:
            _check_query(q)
        if not 1 <= k <= MAX_K:
            raise HTTPException(422, f"k is {k}; {plain['k']}")
        filters = parse_filters(camera, after, before, where)
        names = [g.strip() for g in groups.split(",") if g.strip()] if groups else None
        try:  # a name of the index, never a path: a client cannot make the server open a file
            result = searcher.like(image, k=k, groups=names, filters=filters, text=q or None, group_by=group_by or None)
        except UnknownImage:
            raise HTTPException(404, f"no image named {image!r} in the index") from None
        except CheckpointError:
            raise
        except (ValueError, AttrretError) as exc:
            raise HTTPException(422, str(exc)) from None
        return _json(result.to_json())

    @app.get("/api/parse", summary="What the parser makes of a query: stated, negated, either, unknown, ignored words")
    def parse(q: str = Query(..., description=f"The query, up to {MAX_QUERY_CHARS:,} characters.")) -> Response:
        _check_query(q)
        return _json(searcher.parse(q))

    @app.get("/api/schema", summary="The groups of each subject and the multi-label groups, for display")
    def schema_info() -> Response:
        schema = searcher.schema
        return _json({s.name: {"groups": list(s.group_names),
                               "families": {f: [g.label for g in gs] for f, gs in s.families.items()}}
                      for s in (schema.pedestrian, schema.vehicle)}, cache="private, max-age=3600")

    @app.get("/api/images/{name:path}/attributes", summary="The predicted attributes of one image of the index")
    def attributes(name: str) -> Response:
        try:
            record = searcher.attributes(name)
        except UnknownImage:
            raise HTTPException(404, f"no image named {name!r} in the index") from None
        if not show_paths:
            record = {k: v for k, v in record.items() if k != "path"}
        return _json(record)

    @app.get("/images/{name:path}", summary="An image of the index, or a JPEG thumbnail of it",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def image(
        name: str,
        size: int | None = Query(None, ge=THUMB_MIN, le=THUMB_MAX,
                                 description=f"Thumbnail: a JPEG fitting size x size ({THUMB_MIN}..{THUMB_MAX}); "
                                             "absent: the file itself."),
    ) -> Response:
        try:
            record = searcher.image_file(name)
        except UnknownImage:
            raise HTTPException(404, f"no image named {name!r} in the index") from None

        def read() -> bytes:
            try:
                return _open_indexed(record)
            except _StaleFile as exc:
                raise HTTPException(404, f"the file of image {name!r} {exc}; re-run attrret predict") from None
            except OSError:
                raise HTTPException(404, f"the file of image {name!r} is missing from disk or unreadable") from None

        cache = "private, max-age=300"
        if size is None:
            media = mimetypes.guess_type(record["path"])[0] or "application/octet-stream"
            return Response(read(), media_type=media, headers={"Cache-Control": cache})
        try:
            data = thumbs.get(record, size, read)
        except HTTPException:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # undecodable, truncated, a decompression bomb
            raise HTTPException(422, f"image {name!r} cannot be decoded ({type(exc).__name__})") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": cache})

    app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(_Guard, token=token, allowed_hosts=hosts)
    return app


