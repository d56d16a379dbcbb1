"""`dashfrog ui`: serve the viewer with uvicorn."""

from __future__ import annotations

import uvicorn

from dashfrog_sdk.ui.app import create_app
from dashfrog_sdk.ui.settings import UIConfig


def serve(config: UIConfig, *, log_level: str = "warning") -> None:
    """Serve until interrupted. `config.check_bind()` has refused unsafe addresses already."""
    config.check_bind()
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
