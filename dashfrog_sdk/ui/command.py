"""The `dashfrog ui` command group: serve the viewer, or print a signed tenant link."""

from __future__ import annotations

import click

from dashfrog_sdk.config import DEFAULT_STORE
from dashfrog_sdk.timeutil import parse_duration
from dashfrog_sdk.ui import settings
from dashfrog_sdk.ui.links import make_link


@click.group(invoke_without_command=True)
@click.option(
    "--store",
    "store_path",
    envvar="DASHFROG_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    metavar="PATH",
    help="The flow store (env DASHFROG_STORE).",
)
@click.option("--host", default=settings.DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=settings.DEFAULT_PORT, show_default=True)
@click.pass_context
def ui(ctx: click.Context, store_path: str, host: str, port: int) -> None:
    """Serve the flow viewer on http://HOST:PORT (read-only).

    Off loopback it needs DASHFROG_UI_TOKEN. DASHFROG_UI_TRACE_URL (with {trace_id}) links
    each flow to Jaeger or Tempo; DASHFROG_UI_LINK_KEY enables signed tenant links."""
    if ctx.invoked_subcommand is not None:
        return
    if store_path.strip().lower() in ("off", "none", "0", "false"):
        raise ValueError("the flow store is disabled (DASHFROG_STORE=off); pass --store PATH")
    config = settings.UIConfig.from_env(store_path, host=host, port=port)
    try:
        from dashfrog_sdk.ui.server import serve
    except ImportError as exc:
        raise click.ClickException(
            f"dashfrog ui needs the ui extra ({exc.name} is missing): "
            "pip install 'dashfrog-sdk[ui]'"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    click.echo(f"dashfrog ui: {store_path} on {url}  (Ctrl-C to stop)", err=True)
    if config.token is not None:
        click.echo(f"dashfrog ui: open {url}?token=<{settings.TOKEN_ENV}> once", err=True)
    serve(config)


@ui.command()
@click.option("--tenant", required=True, help="The tenant whose flows the link shows.")
@click.option("--expires", default="7d", show_default=True, help="Valid for: 12h, 7d, 30d...")
@click.option(
    "--base-url",
    envvar=settings.BASE_URL_ENV,
    default=f"http://{settings.DEFAULT_HOST}:{settings.DEFAULT_PORT}",
    show_default=True,
    help=f"The viewer's address as the tenant reaches it (env {settings.BASE_URL_ENV}).",
)
def link(tenant: str, expires: str, base_url: str) -> None:
    """Print a signed link to TENANT's status page (HMAC with DASHFROG_UI_LINK_KEY)."""
    key = settings.env(settings.LINK_KEY_ENV)
    if key is None:
        raise ValueError(
            f"set {settings.LINK_KEY_ENV} (at least {settings.MIN_SECRET} characters) here "
            "and on the viewer: links are signed with it"
        )
    if len(key) < settings.MIN_SECRET:
        raise ValueError(
            f"{settings.LINK_KEY_ENV} must be at least {settings.MIN_SECRET} characters long"
        )
    try:
        valid = parse_duration(expires)
    except ValueError as exc:
        raise ValueError(f"--expires: {exc}") from None
    click.echo(make_link(base_url, key, tenant, valid))
