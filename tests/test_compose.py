"""Offline checks of the demo stack: docker-compose.yml, the configs under integrations/ and
the demo application under examples/demo-app/.

No Docker engine is needed. ``docker-compose config`` (Debian's ``docker-compose`` package,
or the ``docker compose`` plugin) validates the compose file against the Compose schema when
it is installed; everything else reads the files with PyYAML and checks that the pieces fit
together: paths exist, images are pinned, health checks gate start-up order, the collector's
pipelines are complete and point at services that exist, Prometheus scrapes ports that are
served. The last tests import the demo application and run one order in-process.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
INTEGRATIONS = ROOT / "integrations"
COLLECTOR_CONFIG = INTEGRATIONS / "otel-collector.yaml"
PROMETHEUS_CONFIG = INTEGRATIONS / "prometheus.yml"
DEMO_DIR = ROOT / "examples" / "demo-app"
DEMO_DOCKERFILE = DEMO_DIR / "Dockerfile"

COLLECTOR = "otel-collector"
EXPECTED_SERVICES = {
    COLLECTOR,
    "jaeger",
    "prometheus",
    "redis",
    "clickhouse",
    "clickhouse-init",
    "api",
    "worker",
    "loadgen",
    "ui",
}
# Services that run once and exit (no health check; dependents wait for their success).
ONE_SHOT = {"clickhouse-init"}
DEMO_SERVICES = {"api", "worker", "loadgen"}
REQUIRED_PUBLISHED_PORTS = {
    4317: "OTLP gRPC (collector)",
    8123: "ClickHouse HTTP (dashfrog --store clickhouse://...)",
    4318: "OTLP HTTP (collector)",
    16686: "Jaeger UI",
    9090: "Prometheus UI",
    6379: "Redis",
}
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
# Images built FROM scratch: no shell, wget or curl for a health check unless the build adds one.
SCRATCH_IMAGES = ("otel/opentelemetry-collector-contrib", "otel/opentelemetry-collector")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Component types of the OpenTelemetry Collector contrib distribution (0.139). Not exhaustive:
# a real component missing here makes the test fail with a message saying to add it.
KNOWN_COMPONENTS: dict[str, frozenset[str]] = {
    "receivers": _names(
        """otlp otlpjsonfile prometheus jaeger zipkin kafka kafkametrics
        hostmetrics filelog journald syslog tcplog udplog fluentforward statsd carbon influxdb
        docker_stats k8s_cluster k8sobjects k8s_events kubeletstats receiver_creator redis
        postgresql mysql mongodb mongodbatlas elasticsearch rabbitmq memcached nginx apache
        haproxy httpcheck sqlquery sqlserver oracledb snmp sshcheck zookeeper vcenter
        awsxray awsecscontainermetrics awscloudwatch awsfirehose azureeventhub azureblob
        googlecloudpubsub googlecloudspanner splunk_hec signalfx datadog loki
        windowseventlog windowsperfcounters webhookevent nop github gitlab podman_stats
        cloudflare couchdb flinkmetrics iis kafkametrics nsxt purefa riak saphana
        solace chrony expvar jmx pulsar skywalking"""
    ),
    "processors": _names(
        """batch memory_limiter attributes resource resourcedetection filter transform
        k8sattributes probabilistic_sampler tail_sampling span groupbyattrs groupbytrace
        metricstransform cumulativetodelta deltatocumulative deltatorate redaction interval
        logdedup metricsgeneration geoip schema remotetap sumologic logstransform
        isolationforest unroll"""
    ),
    "exporters": _names(
        """otlp otlphttp debug nop file prometheus prometheusremotewrite kafka elasticsearch
        opensearch clickhouse zipkin splunk_hec datadog awsxray awsemf awss3 awskinesis
        googlecloud googlemanagedprometheus azuremonitor azureblob azuredataexplorer influxdb
        signalfx loadbalancing otelarrow syslog coralogix honeycombmarker logzio sumologic
        pulsar rabbitmq cassandra alertmanager dataset mezmo sentry carbon doris
        tencentcloud_logservice alibabacloud_logservice kinetica bmchelix faro tinybird
        stef"""
    ),
    "extensions": _names(
        """health_check healthcheckv2 pprof zpages file_storage db_storage basicauth
        bearertokenauth oauth2client oidc headers_setter k8s_observer docker_observer
        host_observer ecs_observer sigv4auth jaeger_remote_sampling opamp asapclient
        awsproxy googleclientauth memory_limiter"""
    ),
    "connectors": _names(
        """forward spanmetrics servicegraph count routing exceptions failover roundrobin
        sum signaltometrics datadog grafanacloud otlpjson"""
    ),
}
# Components that existed once and were removed: a config naming them does not start.
REMOVED_COMPONENTS: dict[str, str] = {
    "exporters/logging": "removed in v0.111.0: use the `debug` exporter",
    "exporters/jaeger": "removed in v0.85.0: Jaeger accepts OTLP, use an `otlp` exporter",
    "exporters/jaeger_thrift": "removed in v0.85.0: use an `otlp` exporter",
    "exporters/loki": "removed: Loki accepts OTLP, use an `otlphttp` exporter",
    "exporters/sapm": "removed: use an `otlphttp` exporter",
    "receivers/opencensus": "removed: OpenCensus is archived, use `otlp`",
    "exporters/opencensus": "removed: OpenCensus is archived, use `otlp`",
    "processors/routing": "removed: use the `routing` connector",
}
SIGNALS = ("traces", "metrics", "logs")


# -- helpers -------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _component_type(name: str) -> str:
    """``otlp/jaeger`` -> ``otlp``."""
    return name.split("/", 1)[0]


def _host_port(endpoint: str) -> tuple[str, int | None]:
    """``jaeger:4317``, ``http://jaeger:4318/v1/traces``, ``0.0.0.0:8889`` -> (host, port)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    return parts.hostname or "", parts.port


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).split("=", 1) for item in env)
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}
    return {str(k): ("" if v is None else str(v)) for k, v in env.items()}


def _port_number(text: str) -> int | None:
    text = text.split("/", 1)[0]
    return int(text) if text.isdigit() else None


def _published_ports(service: dict[str, Any]) -> set[int]:
    """Host ports a service publishes (short ``[ip:]host:container`` or long syntax)."""
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            number = _port_number(str(entry.get("published", "")))
        else:
            pieces = str(entry).split(":")
            number = _port_number(pieces[-2]) if len(pieces) >= 2 else None
        if number is not None:
            ports.add(number)
    return ports


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Ports a service serves inside the compose network (port targets and ``expose``)."""
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        text = str(entry.get("target", "")) if isinstance(entry, dict) else str(entry)
        number = _port_number(text.split(":")[-1])
        if number is not None:
            ports.add(number)
    for entry in service.get("expose") or []:
        number = _port_number(str(entry))
        if number is not None:
            ports.add(number)
    return ports


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of every bind mount given as a relative path."""
    mounts: list[tuple[str, str]] = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((str(volume["source"]), str(volume["target"])))
            continue
        source, _, rest = str(volume).partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, rest.split(":", 1)[0]))
    return mounts


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(t) for t in test or []]


def _depends_on(service: dict[str, Any]) -> dict[str, str | None]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys((str(d) for d in deps), None)
    return {str(name): (spec or {}).get("condition") for name, spec in deps.items()}


def _is_pinned(image: str) -> bool:
    """A digest, or a tag that is not ``latest`` and names a version (has a digit)."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.rsplit(":", 1)[1]
    return tag != "latest" and any(ch.isdigit() for ch in tag)


@dataclass
class Stage:
    image: str
    name: str | None
    copies: list[tuple[list[str], str, str | None]] = field(default_factory=list)
    """(sources, destination, --from stage) of each COPY/ADD."""


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def _parse_dockerfile(path: Path) -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _dockerfile_instructions(path):
        if keyword == "ARG" and not stages and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip("\"'")
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif keyword in ("COPY", "ADD"):
            assert stages, f"{path}: {keyword} before FROM"
            from_stage = None
            if rest.startswith("["):
                words = [str(w) for w in yaml.safe_load(rest)]
            else:
                words = shlex.split(rest)
            while words and words[0].startswith("--"):
                flag = words.pop(0)
                if flag.startswith("--from="):
                    from_stage = flag.split("=", 1)[1]
            stages[-1].copies.append((words[:-1], words[-1], from_stage))
    return stages


def _dockerignore_patterns(context: Path, dockerfile: Path) -> list[str]:
    """BuildKit reads ``<Dockerfile>.dockerignore`` beside the Dockerfile, else
    ``<context>/.dockerignore``."""
    for candidate in (
        dockerfile.with_name(dockerfile.name + ".dockerignore"),
        context / ".dockerignore",
    ):
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8").splitlines()
            return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return []


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _is_ignored(relpath: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parents, decides."""
    parts = relpath.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _dockerignore_regex(raw.lstrip("!").strip("/"))
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


def _collector_listen_ports(config: dict[str, Any]) -> dict[int, str]:
    """Port -> bind host of everything the collector serves (receivers, exporters such as
    ``prometheus``, extensions, its own telemetry)."""
    ports: dict[int, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            endpoint = node.get("endpoint")
            if isinstance(endpoint, str):
                host, port = _host_port(endpoint)
                if port is not None and (host in WILDCARD_HOSTS | LOOPBACK_HOSTS):
                    ports[port] = host
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for section in ("receivers", "extensions"):
        walk(config.get(section) or {})
    for name, exporter in (config.get("exporters") or {}).items():
        if _component_type(name) == "prometheus":
            walk(exporter or {})
    readers = ((config.get("service") or {}).get("telemetry") or {}).get("metrics") or {}
    for reader in readers.get("readers") or []:
        prom = ((reader.get("pull") or {}).get("exporter") or {}).get("prometheus") or {}
        if "port" in prom:
            ports[int(prom["port"])] = str(prom.get("host", "localhost"))
    return ports


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        f"{COMPOSE_FILE} has no services mapping"
    )
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(k): v or {} for k, v in compose["services"].items()}


@pytest.fixture(scope="module")
def collector_config() -> dict[str, Any]:
    data = _load_yaml(COLLECTOR_CONFIG)
    assert isinstance(data, dict), f"{COLLECTOR_CONFIG} is not a mapping"
    return data


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    data = _load_yaml(PROMETHEUS_CONFIG)
    assert isinstance(data, dict), f"{PROMETHEUS_CONFIG} is not a mapping"
    return data


def _build(service: dict[str, Any]) -> tuple[Path, Path] | None:
    """(context dir, Dockerfile) of a built service."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (ROOT / str(build.get("context", "."))).resolve()
    return context, context / str(build.get("dockerfile", "Dockerfile"))


# -- the compose file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cli",
    [
        pytest.param(["docker-compose"], id="docker-compose-v1"),
        pytest.param(["docker", "compose"], id="docker-compose-plugin"),
    ],
)
def test_compose_cli_accepts_the_file(cli: list[str]) -> None:
    """The Compose implementation itself parses and validates the file (no engine needed)."""
    if shutil.which(cli[0]) is None:
        pytest.skip(
            f"`{' '.join(cli)}` is not installed (Debian: apt-get install -y docker-compose)"
        )
    if cli == ["docker", "compose"]:
        probe = subprocess.run(
            [*cli, "version"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            pytest.skip("the `docker compose` plugin is not installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(cli)} config -q failed:\n{result.stderr}"


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_build_contexts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        built = _build(service)
        if built is None:
            continue
        context, dockerfile = built
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
        assert ROOT in (context, *context.parents), f"{name}: context {context} is outside the repo"


def test_bind_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, target in _bind_mounts(service):
            path = (ROOT / source).resolve()
            assert path.exists(), f"{name}: bind mount source {source} ({path}) does not exist"
            assert target.startswith("/"), f"{name}: mount target {target!r} is not absolute"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" not in service:
            image = str(service.get("image", ""))
            assert _is_pinned(image), f"{name}: image {image!r} is not pinned to a version tag"
            continue
        built = _build(service)
        assert built is not None
        stages = _parse_dockerfile(built[1])
        assert stages, f"{name}: {built[1]} has no FROM"
        stage_names = {s.name for s in stages if s.name}
        for stage in stages:
            if stage.image in stage_names or stage.image == "scratch":
                continue
            assert _is_pinned(stage.image), (
                f"{name}: {built[1].relative_to(ROOT)} FROM {stage.image!r} is not pinned"
            )


def test_published_ports(services: dict[str, dict[str, Any]]) -> None:
    published: dict[int, str] = {}
    for name, service in services.items():
        for port in _published_ports(service):
            assert port not in published, f"host port {port}: {published[port]} and {name}"
            published[port] = name
    for port, what in REQUIRED_PUBLISHED_PORTS.items():
        assert port in published, f"port {port} ({what}) is not published"
    assert published[4317] == published[4318] == COLLECTOR
    assert published[16686] == "jaeger"
    assert published[9090] == "prometheus"
    assert published[6379] == "redis"


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name}: a one-shot service must not restart"
            continue
        argv = _healthcheck_argv(service)
        assert argv, f"{name}: no healthcheck"
        assert argv[0] in ("CMD", "CMD-SHELL") and len(argv) >= 2, (
            f"{name}: healthcheck test must be [CMD, ...] or [CMD-SHELL, ...], got {argv}"
        )
        assert not service["healthcheck"].get("disable"), f"{name}: healthcheck disabled"


def test_depends_on_waits_for_healthy_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, condition in _depends_on(service).items():
            assert dep in services, f"{name} depends on undefined service {dep!r}"
            if dep in ONE_SHOT:
                assert condition == "service_completed_successfully", (
                    f"{name} -> {dep}: wait for the one-shot with "
                    f"`condition: service_completed_successfully`, got {condition!r}"
                )
                continue
            assert condition == "service_healthy", (
                f"{name} -> {dep}: use `condition: service_healthy`, got {condition!r}"
            )
            assert _healthcheck_argv(services[dep]), (
                f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
            )

    # No cycles: `docker compose up` could never start them.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"depends_on cycle: {' -> '.join([*path, node])}"
        state[node] = 1
        for dep in _depends_on(services[node]):
            visit(dep, [*path, node])
        state[node] = 2

    for name in services:
        visit(name, [])


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    """Apps wait for the collector and Redis; the collector for Jaeger; loadgen for the apps."""
    for app in ("api", "worker"):
        assert {COLLECTOR, "redis"} <= _depends_on(services[app]).keys(), app
    assert {"jaeger", "clickhouse", "clickhouse-init"} <= _depends_on(services[COLLECTOR]).keys()
    assert "clickhouse" in _depends_on(services["clickhouse-init"])
    assert {"api", "worker"} <= _depends_on(services["loadgen"]).keys()


def test_scratch_based_images_ship_their_healthcheck_binary(
    services: dict[str, dict[str, Any]],
) -> None:
    """The collector image is FROM scratch: the health check's program must be added."""
    for name, service in services.items():
        argv = _healthcheck_argv(service)
        image = str(service.get("image", ""))
        built = _build(service)
        final = _parse_dockerfile(built[1])[-1] if built else None
        base = final.image if final else image
        if not base.startswith(SCRATCH_IMAGES):
            continue
        assert argv[0] == "CMD", f"{name}: {base} has no shell, CMD-SHELL cannot run"
        assert final is not None, (
            f"{name}: {base} has no wget/curl; build it with a static health check binary"
        )
        added = {dest.rstrip("/") for _, dest, _ in final.copies}
        program = argv[1]
        assert program in added or str(Path(program).parent) in added, (
            f"{name}: health check runs {program}, which {built and built[1]} does not add"
        )


def test_collector_reads_the_mounted_config(services: dict[str, dict[str, Any]]) -> None:
    collector = services[COLLECTOR]
    mounts = {(ROOT / src).resolve(): dst for src, dst in _bind_mounts(collector)}
    assert COLLECTOR_CONFIG.resolve() in mounts, f"{COLLECTOR} does not mount {COLLECTOR_CONFIG}"
    target = mounts[COLLECTOR_CONFIG.resolve()]
    argv = _command(collector)
    if not argv:  # the image's default command reads /etc/otelcol-contrib/config.yaml
        assert target == "/etc/otelcol-contrib/config.yaml", f"{COLLECTOR}: config at {target}"
        return
    command = " ".join(argv)
    assert f"--config={target}" in command or f"--config {target}" in command, (
        f"{COLLECTOR}: command {command!r} does not read the mounted config {target}"
    )


def test_demo_services_export_to_the_collector(services: dict[str, dict[str, Any]]) -> None:
    names: set[str] = set()
    for name in sorted(DEMO_SERVICES):
        env = _environment(services[name])
        assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == f"http://{COLLECTOR}:4317", name
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc", name
        assert env.get("DASHFROG_CONSOLE") == "off", f"{name}: DASHFROG_CONSOLE must be 'off'"
        service_name = env.get("OTEL_SERVICE_NAME", "")
        assert service_name, f"{name}: OTEL_SERVICE_NAME is not set"
        assert service_name not in names, f"OTEL_SERVICE_NAME {service_name!r} used twice"
        names.add(service_name)
        host, port = _host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert host in services and port in _container_ports(services[host]), (
            f"{name}: OTLP endpoint {host}:{port} is not served by a compose service"
        )
        redis_url = env.get("REDIS_URL", "")
        host, port = _host_port(redis_url)
        assert host in services and (port or 6379) in _container_ports(services[host]), (
            f"{name}: REDIS_URL {redis_url!r} does not point at a compose service"
        )
        assert _build(services[name]) == (ROOT, DEMO_DOCKERFILE), (
            f"{name}: not built from {DEMO_DOCKERFILE.relative_to(ROOT)} with the repo as context"
        )


def test_demo_commands_name_modules_the_image_contains(
    services: dict[str, dict[str, Any]],
) -> None:
    stages = _parse_dockerfile(DEMO_DOCKERFILE)
    copied = [
        (ROOT / src).resolve()
        for s in stages
        for srcs, _, frm in s.copies
        if not frm
        for src in srcs
    ]
    for name in sorted(DEMO_SERVICES):
        argv = _command(services[name])
        assert argv, f"{name}: no command"
        modules: list[str] = []
        for i, word in enumerate(argv):
            if re.fullmatch(r"\w+:\w+", word):  # uvicorn app:app
                modules.append(word.split(":")[0] + ".py")
            elif word == "-A" and i + 1 < len(argv):  # celery -A tasks
                modules.append(argv[i + 1].split(".")[0] + ".py")
            elif word.endswith(".py"):
                modules.append(word)
        assert modules, f"{name}: cannot tell which module {argv} runs"
        for module in modules:
            path = (DEMO_DIR / module).resolve()
            assert path.is_file(), f"{name}: runs {module}, which is not in {DEMO_DIR}"
            assert any(path == c or c in path.parents for c in copied), (
                f"{name}: {module} is not copied into the image by {DEMO_DOCKERFILE}"
            )


def test_dockerfile_copy_sources_exist_and_reach_the_build(
    services: dict[str, dict[str, Any]],
) -> None:
    seen: set[Path] = set()
    for name, service in services.items():
        built = _build(service)
        if built is None or built[1] in seen:
            continue
        context, dockerfile = built
        seen.add(dockerfile)
        ignore = _dockerignore_patterns(context, dockerfile)
        for stage in _parse_dockerfile(dockerfile):
            for sources, _, from_stage in stage.copies:
                if from_stage is not None:
                    continue
                for source in sources:
                    matches = (
                        list(context.glob(source.rstrip("/")))
                        if any(ch in source for ch in "*?[")
                        else [context / source]
                    )
                    assert matches and all(m.exists() for m in matches), (
                        f"{name}: {dockerfile.relative_to(ROOT)} copies {source!r}, "
                        f"missing from the build context {context}"
                    )
                    rel = source.rstrip("/") or "."
                    assert not _is_ignored(rel, ignore), (
                        f"{name}: {dockerfile.relative_to(ROOT)} copies {source!r}, "
                        "which its .dockerignore excludes"
                    )


def test_ui_service_is_the_viewer_on_clickhouse_behind_a_token(
    services: dict[str, dict[str, Any]],
) -> None:
    """The viewer refuses 0.0.0.0 without DASHFROG_UI_TOKEN: the service sets one, publishes
    on the host's loopback only, reads a ClickHouse URL, and its health check is /healthz."""
    from dashfrog_sdk.ui.settings import UIConfig

    ui = services["ui"]
    assert _build(ui) == (ROOT, DEMO_DOCKERFILE), "ui: built from the demo image (ui extra)"
    argv = [str(a) for a in _command(ui)]
    assert argv[:2] == ["dashfrog", "ui"], argv
    option = {argv[i]: argv[i + 1] for i in range(2, len(argv) - 1, 2)}
    env = ui["environment"]
    assert option["--store"].startswith("clickhouse://") or "clickhouse://" in option["--store"]
    token = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(env["DASHFROG_UI_TOKEN"]))
    config = UIConfig(
        store="x", host=option["--host"], port=int(option["--port"]), token=token or None
    )
    config.check_bind()  # raises without a token off loopback
    assert len(token) >= 16
    for entry in ui["ports"]:
        host, _, target = str(entry).split(":")
        assert host in LOOPBACK_HOSTS and int(target) == int(option["--port"]), entry
    assert "8080/healthz" in " ".join(_healthcheck_argv(ui))
    assert "{trace_id}" in str(env["DASHFROG_UI_TRACE_URL"])
    runs = " ".join(a for k, a in _dockerfile_instructions(DEMO_DOCKERFILE) if k == "RUN")
    extras = re.search(r"\.\[([\w,\s-]+)\]", runs)
    assert extras is not None and "ui" in {e.strip() for e in extras.group(1).split(",")}


def test_demo_dockerfile_installs_the_sdk_with_extras() -> None:
    runs = " ".join(a for k, a in _dockerfile_instructions(DEMO_DOCKERFILE) if k == "RUN")
    assert re.search(r"pip install\s+[\"']?\.\[", runs), "the SDK is not pip-installed from ."
    extras = re.search(r"\.\[([\w,\s-]+)\]", runs)
    assert extras is not None
    assert {"fastapi", "celery", "requests"} <= {e.strip() for e in extras.group(1).split(",")}
    assert "uvicorn" in runs and "redis" in runs
    assert _parse_dockerfile(DEMO_DOCKERFILE)[0].image.startswith("python:3.11-slim")
    ignore = _dockerignore_patterns(ROOT, DEMO_DOCKERFILE)
    assert _is_ignored(".venv", ignore) and _is_ignored(".git", ignore), (
        "the demo image's build context should leave out .venv and .git"
    )


def test_dockerignore_matcher() -> None:
    patterns = ["*", "!dashfrog_sdk", "!examples/demo-app", "**/__pycache__"]
    assert _is_ignored(".venv", patterns)
    assert _is_ignored("examples/other", patterns)
    assert not _is_ignored("dashfrog_sdk/flow.py", patterns)
    assert not _is_ignored("examples/demo-app/app.py", patterns)
    assert _is_ignored("dashfrog_sdk/__pycache__/x.pyc", patterns)
    assert not _dockerignore_regex("*").match("a/b")  # '*' stays within one path segment


# -- the OpenTelemetry Collector ---------------------------------------------------------


def test_collector_pipelines_are_complete(collector_config: dict[str, Any]) -> None:
    pipelines: dict[str, Any] = (collector_config.get("service") or {}).get("pipelines") or {}
    signals = {_component_type(name) for name in pipelines}
    assert set(SIGNALS) <= signals, f"missing pipelines: {sorted(set(SIGNALS) - signals)}"
    connectors = set(collector_config.get("connectors") or {})
    for pipeline_name, pipeline in pipelines.items():
        assert _component_type(pipeline_name) in SIGNALS, f"unknown signal {pipeline_name}"
        receivers = pipeline.get("receivers") or []
        processors = pipeline.get("processors") or []
        exporters = pipeline.get("exporters") or []
        assert receivers and exporters, f"pipeline {pipeline_name}: needs receivers and exporters"
        for kind, names in (
            ("receivers", receivers),
            ("processors", processors),
            ("exporters", exporters),
        ):
            defined = set(collector_config.get(kind) or {})
            if kind != "processors":
                defined |= connectors
            for component in names:
                assert component in defined, (
                    f"pipeline {pipeline_name} uses {kind[:-1]} {component!r}, "
                    f"not defined under `{kind}:`"
                )
        types = [_component_type(p) for p in processors]
        assert types[:1] == ["memory_limiter"], (
            f"pipeline {pipeline_name}: memory_limiter must come first, got {processors}"
        )
        assert "batch" in types, f"pipeline {pipeline_name}: no batch processor"
    for extension in (collector_config.get("service") or {}).get("extensions") or []:
        assert extension in (collector_config.get("extensions") or {}), (
            f"service.extensions names undefined extension {extension!r}"
        )


def test_collector_components_are_real(collector_config: dict[str, Any]) -> None:
    for kind, known in KNOWN_COMPONENTS.items():
        for name in collector_config.get(kind) or {}:
            ctype = _component_type(name)
            removed = REMOVED_COMPONENTS.get(f"{kind}/{ctype}")
            assert removed is None, f"{kind[:-1]} {name!r}: {removed}"
            assert ctype in known, (
                f"{kind[:-1]} {name!r} is not a known collector-contrib component "
                "(if it is real, add it to KNOWN_COMPONENTS)"
            )
    unknown = set(collector_config) - {*KNOWN_COMPONENTS, "service"}
    assert not unknown, f"unknown top-level collector config keys: {sorted(unknown)}"
    telemetry = (collector_config.get("service") or {}).get("telemetry") or {}
    assert "address" not in (telemetry.get("metrics") or {}), (
        "service.telemetry.metrics.address was removed: use metrics.readers"
    )


def test_collector_receives_otlp_from_other_containers(
    collector_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    protocols = ((collector_config.get("receivers") or {}).get("otlp") or {}).get("protocols")
    assert isinstance(protocols, dict), "no otlp receiver"
    for protocol, port in (("grpc", 4317), ("http", 4318)):
        endpoint = str((protocols.get(protocol) or {}).get("endpoint", ""))
        host, bound = _host_port(endpoint)
        # Since v0.104 the default is localhost: unreachable from the other containers.
        assert host in WILDCARD_HOSTS and bound == port, (
            f"otlp {protocol} receiver must listen on 0.0.0.0:{port}, got {endpoint!r}"
        )
        assert port in _published_ports(services[COLLECTOR])


def test_collector_exporters_reach_compose_services(
    collector_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    targets = 0
    for name, exporter in (collector_config.get("exporters") or {}).items():
        endpoint = (exporter or {}).get("endpoint")
        if not isinstance(endpoint, str):
            continue
        host, port = _host_port(endpoint)
        if host in WILDCARD_HOSTS | LOOPBACK_HOSTS:
            continue  # a listening exporter, such as prometheus
        targets += 1
        assert host in services, f"exporter {name}: host {host!r} is not a compose service"
        assert port in _container_ports(services[host]), (
            f"exporter {name}: {host} does not serve port {port} (add it to ports/expose)"
        )
    assert targets, "no exporter sends to another service"
    traces = (collector_config["service"]["pipelines"]).get("traces") or {}
    jaeger_exporters = [
        e
        for e in traces.get("exporters") or []
        if _host_port(str((collector_config["exporters"][e] or {}).get("endpoint", "")))[0]
        == "jaeger"
    ]
    assert jaeger_exporters, "the traces pipeline does not export to jaeger"


def test_collector_logs_are_visible(collector_config: dict[str, Any]) -> None:
    """dashfrog lifecycle events are log records: `docker compose logs otel-collector`."""
    pipelines = collector_config["service"]["pipelines"]
    exporters = collector_config.get("exporters") or {}
    debug = [
        e
        for name, p in pipelines.items()
        if _component_type(name) == "logs"
        for e in p.get("exporters") or []
        if _component_type(e) == "debug"
    ]
    assert debug, "no logs pipeline exports to the debug exporter"
    assert any((exporters[e] or {}).get("verbosity") == "detailed" for e in debug), (
        "the logs debug exporter must use `verbosity: detailed` to print event attributes"
    )


def test_collector_memory_limit_fits_the_container(
    collector_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    limiter = collector_config["processors"]["memory_limiter"] or {}
    assert "check_interval" in limiter
    assert "limit_mib" in limiter or "limit_percentage" in limiter
    mem_limit = str(services[COLLECTOR].get("mem_limit", ""))
    match = re.fullmatch(r"(\d+)([mMgG])", mem_limit)
    if "limit_mib" in limiter and match:
        mib = int(match.group(1)) * (1024 if match.group(2) in "gG" else 1)
        assert int(limiter["limit_mib"]) < mib, "memory_limiter.limit_mib >= container mem_limit"


# -- Prometheus --------------------------------------------------------------------------


def test_prometheus_scrapes_served_ports(
    prometheus_config: dict[str, Any],
    collector_config: dict[str, Any],
    services: dict[str, dict[str, Any]],
) -> None:
    collector_ports = _collector_listen_ports(collector_config)
    targets: list[str] = []
    for job in prometheus_config.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            targets.extend(str(t) for t in static.get("targets") or [])
    assert targets, "Prometheus scrapes nothing"
    for target in targets:
        host, port = _host_port(target)
        assert host in services, f"scrape target {target}: {host!r} is not a compose service"
        assert port in _container_ports(services[host]), (
            f"scrape target {target}: {host} does not serve port {port} (ports/expose)"
        )
        if host == COLLECTOR:
            assert collector_ports.get(port) in WILDCARD_HOSTS, (
                f"scrape target {target}: the collector does not listen on 0.0.0.0:{port}"
            )
    prom_exporters = [
        e for e in collector_config.get("exporters") or {} if _component_type(e) == "prometheus"
    ]
    exporter_ports = {
        _host_port(str(collector_config["exporters"][e]["endpoint"]))[1] for e in prom_exporters
    }
    assert any(f"{COLLECTOR}:{p}" in targets for p in exporter_ports), (
        "Prometheus does not scrape the collector's prometheus exporter"
    )
    mounted = {(ROOT / s).resolve() for s, _ in _bind_mounts(services["prometheus"])}
    assert PROMETHEUS_CONFIG.resolve() in mounted


# -- the demo application ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_modules() -> Iterator[dict[str, ModuleType]]:
    """Import examples/demo-app/{tasks,app,loadgen}.py as the container does (its directory on
    sys.path), with Celery in eager mode and no collector, then forget them again."""
    names = ("app", "tasks", "loadgen")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(DEMO_DIR))
        for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            mp.delenv(var, raising=False)
        mp.setenv("DASHFROG_CONSOLE", "off")
        mp.setenv("DASHFROG_STORE", "off")
        mp.setenv("DEMO_CELERY_EAGER", "1")
        mp.setenv("DEMO_FAILURE_RATE", "0")
        mp.setenv("DEMO_MAX_STEP_DELAY_MS", "0")
        mp.setenv("REDIS_URL", "memory://")
        try:
            yield {n: importlib.import_module(n) for n in ("tasks", "app", "loadgen")}
        finally:
            for n in names:
                sys.modules.pop(n, None)
            sys.modules.update(saved)


def test_demo_modules_import(demo_modules: dict[str, ModuleType]) -> None:
    from celery import Celery
    from fastapi import FastAPI

    tasks, app, loadgen = demo_modules["tasks"], demo_modules["app"], demo_modules["loadgen"]
    assert isinstance(app.app, FastAPI)
    assert isinstance(tasks.celery_app, Celery)
    assert tasks.PROCESS_ORDER_TASK in tasks.celery_app.tasks
    assert app.process_order is tasks.process_order
    assert tasks.celery_app.conf.broker_url == "memory://"
    paths = {getattr(route, "path", None) for route in app.app.routes}
    assert {"/orders", "/healthz"} <= paths
    assert callable(loadgen.run_one_order)
    order = loadgen.build_order("acme-corp")
    assert order["tenant"] == "acme-corp" and order["items"]


def test_demo_order_runs_in_process(demo_modules: dict[str, ModuleType]) -> None:
    """One order through the API and the (eager) Celery task: one flow, both halves' steps."""
    from fastapi.testclient import TestClient

    from dashfrog_sdk.testing import capture

    app, loadgen = demo_modules["app"], demo_modules["loadgen"]
    with TestClient(app.app) as client, capture() as cap:
        assert client.get("/healthz").status_code == 200
        order = loadgen.build_order("globex")
        response = client.post("/orders", json=order)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "accepted"
        assert re.fullmatch(r"[0-9a-f]{32}", body["flow_id"]), body
        captured = cap.assert_flow(
            "order_processing",
            status="completed",
            tenant="globex",
            steps=["validate_order", "reserve_stock", "fraud_check", "charge_payment", "ship"],
            labels={"region": order["region"]},
        )
        assert captured.id == body["flow_id"]

        cap.clear()
        by_tenant = {t: loadgen.run_one_order(client, t) for t in loadgen.DEFAULT_TENANTS}
        assert len(set(by_tenant.values())) == 3 and body["flow_id"] not in by_tenant.values()
        for tenant, flow_id in by_tenant.items():
            assert cap.flow(id=flow_id).tenant == tenant
        assert client.post("/orders", json={"tenant": "", "items": []}).status_code == 422


def test_demo_order_failure_fails_the_flow(
    demo_modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated failure: HTTP 422 with the flow id, and the flow ends as failed."""
    from fastapi.testclient import TestClient

    from dashfrog_sdk.testing import capture

    monkeypatch.setenv("DEMO_FAILURE_RATE", "1")
    app, loadgen = demo_modules["app"], demo_modules["loadgen"]
    with TestClient(app.app) as client, capture() as cap:
        response = client.post("/orders", json=loadgen.build_order("initech"))
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["status"] == "rejected" and body["error"]
        captured = cap.assert_flow("order_processing", status="failed", tenant="initech")
        assert captured.id == body["flow_id"]
        assert [(s.name, s.status) for s in captured.steps] == [("validate_order", "failed")]
        assert loadgen.run_one_order(client, "initech") != body["flow_id"]


def test_loadgen_arguments_are_bounded(demo_modules: dict[str, ModuleType]) -> None:
    loadgen = demo_modules["loadgen"]
    for bad in (["--rate", "0"], ["--rate", "1000"], ["--count", "-1"], ["--tenants", ","]):
        with pytest.raises(SystemExit):
            loadgen.main(bad)


# -- ClickHouse: the exporter, the rollup and `dashfrog clickhouse init` agree -------------------


def _init_argv(services: dict[str, dict[str, Any]]) -> list[str]:
    command = services["clickhouse-init"]["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    assert argv[:3] == ["dashfrog", "clickhouse", "init"], argv
    return argv


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"clickhouse-init: no {name} in {argv}"
    return argv[argv.index(name) + 1]


def test_clickhouse_exports_traces_and_logs(collector_config: dict[str, Any]) -> None:
    pipelines = collector_config["service"]["pipelines"]
    for signal in ("traces", "logs"):
        exporters = pipelines[signal]["exporters"]
        assert any(_component_type(e) == "clickhouse" for e in exporters), (
            f"the {signal} pipeline does not export to ClickHouse"
        )
    assert "otlp/jaeger" in pipelines["traces"]["exporters"], "keep Jaeger for traces"


def test_clickhouse_exporter_matches_the_rollup(
    collector_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """The rollup's views read <database>.otel_traces / otel_logs: the exporter must write
    exactly there, with the credentials the ClickHouse service has."""
    from dashfrog_sdk.clickhouse import parse_url

    exporter = collector_config["exporters"]["clickhouse"]
    argv = _init_argv(services)
    target = parse_url(_option(argv, "--url"), _option(argv, "--database"))
    rollup = (INTEGRATIONS / "clickhouse" / "001_flow_rollup.sql").read_text()
    assert exporter["database"] == target.database
    for key, table in (("traces_table_name", "otel_traces"), ("logs_table_name", "otel_logs")):
        assert exporter.get(key, table) == table
        assert f"FROM {{db}}.{table}" in rollup
    host, port = _host_port(exporter["endpoint"])
    assert (host, port) == ("clickhouse", 9000) and 9000 in _container_ports(services["clickhouse"])
    env = _environment(services["clickhouse"])
    assert (exporter["username"], exporter["password"]) == (
        env["CLICKHOUSE_USER"],
        env["CLICKHOUSE_PASSWORD"],
    )
    assert (target.username, target.password) == (exporter["username"], exporter["password"])
    assert target.host == "clickhouse" and target.port in _container_ports(services["clickhouse"])
    assert env["CLICKHOUSE_DB"] == target.database


def test_clickhouse_init_runs_the_cli_the_image_installs(
    services: dict[str, dict[str, Any]],
) -> None:
    _init_argv(services)
    built = _build(services["clickhouse-init"])
    assert built is not None and built[1] == DEMO_DOCKERFILE
    runs = " ".join(a for k, a in _dockerfile_instructions(DEMO_DOCKERFILE) if k == "RUN")
    extras = re.search(r"\.\[([\w,\s-]+)\]", runs)
    assert extras is not None
    assert {"cli", "clickhouse"} <= {e.strip() for e in extras.group(1).split(",")}
