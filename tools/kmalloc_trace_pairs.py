#!/usr/bin/env python3
"""Distinct (bytes_req, bytes_alloc, gfp_flags) of the kmem:kmalloc events of ftrace text files.

Made tests/fixtures/kmalloc_trace_pairs_6.18.txt (as root, on the reference machine):

    record-kmem-trace /tmp/t1.txt -- bash -c 'ls -laR /usr/lib >/dev/null'
    record-kmem-trace /tmp/t2.txt -- python3 tools/kmalloc_trace_pairs.py --load
    python3 tools/kmalloc_trace_pairs.py /tmp/t1.txt /tmp/t2.txt > tests/fixtures/...txt

`--load` runs a small workload whose socket buffers and pipe rings make the kernel kmalloc
sizes from a few bytes to 64 KiB (the large ones go through kmalloc_large).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import sys

_KMALLOC = re.compile(r" kmalloc: .*?bytes_req=(\d+) bytes_alloc=(\d+) gfp_flags=(\S+)")
_F_SETPIPE_SZ = 1031


def load() -> None:
    for n in range(1, 40):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for size in (n * 37, n * 211, n * 1499, n * 3001):
            try:
                a.send(b"x" * size)
                b.recv(1 << 20)
            except OSError:
                pass
        a.close()
        b.close()
        r, w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, _F_SETPIPE_SZ, 4096 * n * 7)
        os.close(r)
        os.close(w)
    for i in range(200):
        path = f"/tmp/kmalloc_trace_pairs_{i % 7}"
        with open(path, "wb") as out:
            out.write(b"z" * (i * 97))
        os.listdir("/usr/lib")
    for i in range(7):
        os.unlink(f"/tmp/kmalloc_trace_pairs_{i}")


def distinct_pairs(paths: list[str]) -> list[tuple[int, int, str]]:
    rows: set[tuple[int, int, str]] = set()
    for path in paths:
        with open(path, errors="replace") as trace:
            for line in trace:
                match = _KMALLOC.search(line)
                if match:
                    rows.add((int(match[1]), int(match[2]), match[3]))
    return sorted(rows)


def main(argv: list[str]) -> int:
    if argv == ["--load"]:
        load()
        return 0
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print("# Distinct (bytes_req bytes_alloc gfp_flags) of the kmem:kmalloc events recorded on "
          f"Linux {os.uname().release}, {os.cpu_count()} CPUs,")
    print("# with /work/shared/tools/record-kmem-trace (see tools/kmalloc_trace_pairs.py).")
    for req, alloc, gfp in distinct_pairs(argv):
        print(req, alloc, gfp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
