"""Install the serving role: the lock's `serving` section, by hash, and nothing else.

    python3 scripts/install_serving.py --venv DIR   # `make serving-env`: a new venv in DIR
    python3 scripts/install_serving.py --system     # the Dockerfile's serving target

The web service, the Lambda function and the stream consumer need, with a compiled model, only
numpy, flask and gunicorn, boto3 and awslambdaric (Pipfile's [serving]). Both ways install the
same files: the locked versions and hashes of Pipfile.lock's `serving` section, with pip's
`--require-hashes --no-deps` (which byte-compiles them), then check that nothing they need is
missing (`pip check`). The venv has no pip of its own: the pip running this script installs
into it (`pip --python`). The code itself is byte-compiled by the caller once it is in place
(`make serving-env`, the Dockerfile), so that no cold start compiles it.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "serving"


def requirements(lock: Path) -> str:
    """The lock's serving section as pip requirement lines, each with its markers and hashes."""
    section = json.loads(lock.read_text())[SECTION]
    lines = []
    for name, spec in sorted(section.items()):
        line = f"{name}{spec['version']}"
        if spec.get("markers"):
            line += f"; {spec['markers']}"
        lines.append(" ".join([line, *(f"--hash={digest}" for digest in spec["hashes"])]))
    return "\n".join(lines) + "\n"


def install(python: Path, lock: Path, *, cache: bool = True) -> None:
    """Install the serving section into `python`'s environment and check it.

    `cache`: let pip keep the files it downloads (not in an image, where they would stay).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="serving-") as listing:
        listing.write(requirements(lock))
        listing.flush()
        pip = [sys.executable, "-m", "pip"]
        if python != Path(sys.executable):
            pip += ["--python", str(python)]
        subprocess.run(
            [
                *pip,
                "install",
                "--quiet",
                *([] if cache else ["--no-cache-dir"]),
                "--disable-pip-version-check",
                "--no-deps",
                "--require-hashes",
                "--requirement",
                listing.name,
            ],
            check=True,
        )
        subprocess.run([*pip, "check"], check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--venv", type=Path, help="create this virtual environment and fill it")
    where.add_argument("--system", action="store_true", help="install into this interpreter")
    parser.add_argument("--lock", type=Path, default=ROOT / "Pipfile.lock")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != (3, 11):
        print(
            f"error: the serving install needs Python 3.11, and this is {sys.version.split()[0]}:"
            " run it with a Python 3.11 (make serving-env PYTHON=python3.11)",
            file=sys.stderr,
        )
        return 2
    if args.system:
        python = Path(sys.executable)
    else:
        venv = [sys.executable, "-m", "venv", "--clear", "--without-pip", str(args.venv)]
        subprocess.run(venv, check=True)
        python = args.venv / "bin" / "python"
    install(python, args.lock, cache=not args.system)
    return 0


if __name__ == "__main__":
    sys.exit(main())
