"""Test images built locally: no registry is reachable from dockerd here.

A busybox rootfs (the static binary, its applet symlinks, passwd/group) is packed in memory
and fed to `docker import`; that takes a fraction of a second, so each dockerd gets it once.
"""

from __future__ import annotations

import functools
import io
import subprocess
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path

import docker
from docker.errors import ImageNotFound

BUSYBOX_BINARY = Path("/bin/busybox")
BUSYBOX_REPOSITORY = "llo-test/busybox"
BUSYBOX_TAG = f"{BUSYBOX_REPOSITORY}:1"
# Served by `httpd -f -p 8080 -h /www`, so a test can fetch a known body.
INDEX_HTML = b"llo-test busybox\n"

_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


@functools.cache
def _applets() -> tuple[str, ...]:
    out = subprocess.run([str(BUSYBOX_BINARY), "--list"], check=True, capture_output=True,
                         text=True).stdout
    return tuple(sorted(name for name in out.split() if name and name != "busybox"))


def busybox_rootfs(extra_files: Mapping[str, bytes] | None = None) -> bytes:
    """A tar of a minimal busybox root filesystem; `extra_files` maps paths to contents."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add_dir(path: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)

        def add_file(path: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "etc", "root", "www", "var", "var/run"):
            add_dir(directory, 0o700 if directory == "root" else 0o755)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", BUSYBOX_BINARY.read_bytes(), 0o755)
        for applet in _applets():
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, "busybox", 0o777, now
            tar.addfile(link)
        add_file("etc/passwd", _PASSWD)
        add_file("etc/group", _GROUP)
        add_file("www/index.html", INDEX_HTML)
        for path, data in (extra_files or {}).items():
            add_file(path.lstrip("/"), data)
    return buffer.getvalue()


def build_busybox(client: docker.DockerClient, tag: str = BUSYBOX_TAG,
                  extra_files: Mapping[str, bytes] | None = None) -> str:
    """Import a busybox image as `tag` (always builds: use `ensure_busybox` to reuse)."""
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_data(
        busybox_rootfs(extra_files), repository=repository, tag=version,
        changes=['CMD ["sh"]'])
    return tag


def ensure_busybox(client: docker.DockerClient, tag: str = BUSYBOX_TAG) -> str:
    """The busybox image as `tag`, built only if this engine does not have it yet."""
    try:
        client.images.get(tag)
    except ImageNotFound:
        build_busybox(client, tag)
    return tag


def variant_tag(client: docker.DockerClient, variant: str, base: str = BUSYBOX_TAG) -> str:
    """Another name for the same image (e.g. to change a spec's image without a new build)."""
    tag = f"{BUSYBOX_REPOSITORY}:{variant}"
    client.images.get(base).tag(BUSYBOX_REPOSITORY, variant)
    return tag
