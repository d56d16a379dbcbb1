# The OpenTelemetry Collector (contrib distribution) plus a static BusyBox, so that
# docker-compose.yml can give it a health check: the upstream image is built FROM scratch and
# has no shell, wget or curl to probe the health_check extension with.
FROM busybox:1.37.0-musl AS busybox

FROM otel/opentelemetry-collector-contrib:0.139.0
COPY --from=busybox /bin/busybox /busybox
