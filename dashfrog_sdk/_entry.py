"""The `dashfrog` console script. Its dependencies (click, rich) are the `cli` extra, so a plain
`pip install dashfrog-sdk` still installs the script: without them it says how to get them in one
line instead of dying in a ModuleNotFoundError traceback.

Start-up: `dashfrog --version` is answered here, before click is imported (click is most of what
is left of the command's start-up once rich, the store and OpenTelemetry load per command).
It bypasses click's `version_option`; `tests/store/test_cli_startup.py` checks that both print
the same line, and that the command loads none of rich, OpenTelemetry or sqlite3.
"""

from __future__ import annotations

import sys

CLI_MODULES = ("click", "rich")


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from dashfrog_sdk._version import __version__

        sys.stdout.write(f"dashfrog, version {__version__}\n")
        return
    try:
        from dashfrog_sdk.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in CLI_MODULES:
            raise
        sys.stderr.write(
            f"dashfrog: the command needs the cli extra ({exc.name} is not installed): "
            "pip install 'dashfrog-sdk[cli]'\n"
        )
        raise SystemExit(1) from None
    cli_main()
