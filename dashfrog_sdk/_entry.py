"""The `dashfrog` console script. Its dependencies (click, rich) are the `cli` extra, so a plain
`pip install dashfrog-sdk` still installs the script: without them it says how to get them in one
line instead of dying in a ModuleNotFoundError traceback."""

from __future__ import annotations

import sys

CLI_MODULES = ("click", "rich")


def main() -> None:
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
