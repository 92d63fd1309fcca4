"""A private network for commands that listen on fixed ports: a Linux network namespace.

The documentation's commands start servers where the documentation says (Prefect on 4200, gunicorn
on 9696, ...), and a user who has just run `make demo` has a Prefect server on 4200 already. Run
in a namespace of their own, the commands get a loopback of their own: the same ports, free, and
the user's servers untouched. The namespace is made with `unshare` (as root, or as an ordinary
user through a user namespace where the kernel allows it) and entered with `nsenter`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

# Runs inside the new namespace: brings its loopback up (SIOCSIFFLAGS, IFF_UP), says so, and
# holds the namespace open until its stdin closes.
_HOLD = r"""
import fcntl, socket, struct, sys
request = struct.pack("16sh14s", b"lo", 0, b"")
with socket.socket() as s:
    flags = struct.unpack("16sh14s", fcntl.ioctl(s, 0x8913, request))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sh14s", b"lo", flags | 1, b""))
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass
class PrivateNetwork:
    """A network namespace held open by a small process; `enter` prefixes a command to run in it."""

    holder: subprocess.Popen
    enter: list[str]

    def close(self) -> None:
        """Let the holder go; the namespace ends with the last process in it."""
        if self.holder.stdin:
            self.holder.stdin.close()
        try:
            self.holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.holder.kill()


def private_network() -> tuple[PrivateNetwork | None, str]:
    """A new private network, or None and the reason this machine cannot make one."""
    if not sys.platform.startswith("linux"):
        return None, f"network namespaces are Linux's, and this is {sys.platform}"
    missing = [tool for tool in ("unshare", "nsenter") if not shutil.which(tool)]
    if missing:
        return None, f"{' and '.join(missing)} (util-linux) not found"
    as_root = os.geteuid() == 0
    user = [] if as_root else ["--map-root-user"]
    holder = subprocess.Popen(
        ["unshare", "--net", *user, "--", sys.executable, "-c", _HOLD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if holder.stdout.readline() != b"ready\n":
        holder.kill()
        error = holder.stderr.read().decode(errors="replace").strip().splitlines()
        return None, f"unshare --net failed: {error[-1] if error else 'no output'}"
    enter = ["nsenter", f"--target={holder.pid}", "--net"]
    if not as_root:
        enter += ["--user", "--preserve-credentials"]
    probe = subprocess.run([*enter, "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        PrivateNetwork(holder, enter).close()
        return None, f"nsenter failed: {probe.stderr.strip()}"
    return PrivateNetwork(holder, [*enter, "--"]), ""
