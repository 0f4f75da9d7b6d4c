"""Run ``server.js``, the Node ``http`` upstream of the path differential test."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.proxies.run import HERE, _start, _stop, wait_for_port

SERVER_JS = HERE / "server.js"


def find_node() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


@contextlib.contextmanager
def node_upstream(workdir: Path, *, port: int) -> Iterator[str]:
    """``node server.js PORT`` on 127.0.0.1; yields its URL."""
    binary = find_node() or "node"
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "node.log"
    process = _start([binary, str(SERVER_JS), str(port)], log)
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
