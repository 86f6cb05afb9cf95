"""Run a command inside a network namespace that has only loopback.

Browser tests use it so that WebRTC media and every request stay on 127.0.0.1 (DESIGN.md, "Browser tests on
these machines"). The machine's PostgreSQL and Redis on 127.0.0.1 are not reachable from inside, so the
command runs on the embedded engines (unix sockets), which work there unchanged.

Usage: python -m tests.e2e.netns COMMAND [ARGS...]
Without root or ``unshare`` the command runs as it is, with a warning.
"""

from __future__ import annotations

import os
import shutil
import sys


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m tests.e2e.netns COMMAND [ARGS...]")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        script = 'ip link set lo up && exec "$@"'
        os.execvpe("unshare", ["unshare", "--net", "--", "sh", "-c", script, "sh", *argv], env)
    print("netns: not root or no unshare/ip; running without a private network namespace", file=sys.stderr)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main(sys.argv[1:])
