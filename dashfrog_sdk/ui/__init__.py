"""`dashfrog ui`: the flow viewer in the browser (``pip install 'dashfrog-sdk[ui]'``).

Read-only pages over a flow store, through its query API only: tenants, flows (filtered,
paginated, live), one flow (waterfall, events, logs, child flows, sequence diagram, JSON,
trace link), stats with a daily heatmap, and signed per-tenant status pages.

```python
from dashfrog_sdk.ui import UIConfig, create_app
app = create_app(UIConfig.from_env(".dashfrog/flows.db"))   # for any ASGI server
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dashfrog_sdk.ui.links import make_link
from dashfrog_sdk.ui.settings import UIConfig

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(config: UIConfig) -> Starlette:
    """The viewer as an ASGI application. (Imported on call: the `dashfrog` command loads this
    package for `dashfrog ui link`, which must work without the server dependencies.)"""
    from dashfrog_sdk.ui.app import create_app as build

    return build(config)


__all__ = ["UIConfig", "create_app", "make_link"]
