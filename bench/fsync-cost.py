#!/usr/bin/env python3
"""What one fdatasync costs on this machine, in wall time and in CPU time.

Appends 8 KiB and calls fdatasync, COUNT times (default 500), in a temporary file under DIR
(default: $TMPDIR or /tmp, where `flotilla bench` puts its nodes' data), and prints the
microseconds per call. On a VM the CPU part (the exit to the hypervisor that notifies the
disk, and the completion interrupt) is paid by whichever thread syncs:

    python3 bench/fsync-cost.py [DIR] [COUNT]
"""

import os
import resource
import sys
import tempfile
import time


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    block = b"x" * 8192
    with tempfile.NamedTemporaryFile(dir=directory) as file:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        for _ in range(count):
            os.write(file.fileno(), block)
            os.fdatasync(file.fileno())
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"{count} fdatasyncs in {directory}: {wall / count * 1e6:.0f} µs of wall time "
        f"and {cpu / count * 1e6:.0f} µs of CPU each"
    )


if __name__ == "__main__":
    main()
