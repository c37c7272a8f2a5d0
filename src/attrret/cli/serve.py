"""``attrret serve``: the search page and its JSON API over an index (FastAPI + uvicorn)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import SchemaDir, WrappedHelp, resolve_schema


def serve(
    index: Annotated[Path, typer.Option("--index", help="Index directory from attrret predict. Reopened by the server when predict replaces it.")] = Path("attrret-work/index"),
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but a loopback address (127.0.0.1, ::1, localhost) needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port; the line on stderr names it).")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", envvar="ATTRRET_TOKEN", show_envvar=True, help="Require this token on every /api/ and /images/ request (header 'Authorization: Bearer T' or ?token=T; open the page as http://HOST:PORT/?token=T). Prefer ATTRRET_TOKEN: other users can read a command line.")] = None,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request on stderr (off by default: URLs may carry the token).")] = False,
    allowed_hosts: Annotated[Optional[str], typer.Option("--allowed-hosts", metavar="NAME,...", help="Host names (the Host header) the server answers, comma-separated; '*' for any. Default on a loopback address without a token: localhost and loopback addresses only (a web page elsewhere cannot reach the server through DNS rebinding); otherwise any.")] = None,
    show_paths: Annotated[bool, typer.Option("--show-paths", help="Include each image's file path on the server in /api/images/NAME/attributes (off: clients are not told where files are).")] = False,
    schema_dir: SchemaDir = None,
) -> None:
    """Serve a search page and a JSON API (/api/search, /api/parse, /api/images/NAME/attributes, /docs) over an index."""
    import gc
    import socket

    from attrret.errors import InputError, OptionError
    from attrret.serve import LOOPBACK_HOSTS, check_token, is_loopback

    schema = resolve_schema(schema_dir)
    if token is not None:
        try:
            check_token(token)
        except OptionError as exc:
            raise OptionError(f"--token (or ATTRRET_TOKEN): {exc}") from None
    if not is_loopback(host) and not token:
        raise OptionError(f"--host {host} is not a loopback address: anyone who can reach it could search and fetch "
                          "the images; give --token T (or set ATTRRET_TOKEN), or serve on 127.0.0.1")
    try:  # resolve and bind before the slow imports: a taken port fails fast
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as exc:
        raise InputError(f"--host {host}: cannot resolve it ({getattr(exc, 'strerror', None) or exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    try:
        import uvicorn

        from attrret.search import Searcher
        from attrret.serve import create_app

        def log(message: str) -> None:  # the Searcher's notes (an index reopened or kept)
            print(message, file=sys.stderr, flush=True)
            gc.freeze()  # a reopened index's objects are long-lived too

        searcher = Searcher.open(index, schema=schema, log=log)
        searcher.warm()  # prepare the gallery now, not on the first query
        # The index's names, rows and files live as long as the server: move them out of the
        # cycle collector's sight. A full collection otherwise walks them all (~150 ms on a
        # million images, a pause every few hundred requests): 334 -> 491 queries/s and p99
        # 312 -> 128 ms with 32 threads on 1M images here. Refcounting still frees them.
        gc.freeze()
        if allowed_hosts is not None:
            hosts: list[str] | None = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
            if not hosts:
                raise OptionError("--allowed-hosts is empty; give host names, or '*' for any")
        else:
            hosts = sorted(LOOPBACK_HOSTS) if is_loopback(host) and not token else None
        app = create_app(searcher, token=token, allowed_hosts=hosts, show_paths=show_paths)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {len(searcher):,} images from {index} at http://{shown}:{bound}/", file=sys.stderr, flush=True)
        if token:
            print("the token is required: open the page as /?token=YOUR_TOKEN", file=sys.stderr, flush=True)
        # proxy_headers off: no X-Forwarded-* is trusted (nothing here depends on the client address).
        config = uvicorn.Config(app, log_level="warning", access_log=access_log, lifespan="off", proxy_headers=False,
                                timeout_graceful_shutdown=5, server_header=False)
        _Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _Server(config):  # noqa: N802 - a class made on demand: uvicorn is imported only when serving
    """uvicorn's server, except that SIGTERM ends it with exit 0 after the graceful shutdown.

    uvicorn re-raises the signal it caught once it has shut down, so that the process dies of
    it; for SIGTERM (a service manager's or a test's stop) a clean exit 0 says more. Ctrl-C
    (SIGINT) is still re-raised: ``attrret: interrupted``, exit 130, as every command.
    """
    import contextlib
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured[:] = [s for s in captured if s != signal.SIGTERM]

    return Server(config)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the app."""
    app.command("serve", cls=WrappedHelp)(serve)
