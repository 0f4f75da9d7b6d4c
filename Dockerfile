# broker: a federated identity token broker.
#
#   docker build -t broker .
#   docker run -p 8000:8000 -v broker-data:/var/lib/broker broker
#   docker run -p 9000:9000 -e BROKER_LISTEN=0.0.0.0:9000 \
#       -e BROKER_PUBLIC_URL=http://127.0.0.1:9000 -v broker-data:/var/lib/broker broker
#
# The image's config (/etc/broker/broker.toml, from config/container.toml) is the embedded default
# adapted to a container and configured by environment variables: it listens on
# ${BROKER_LISTEN:-0.0.0.0:8000} and keeps SQLite, and the key-encryption key generated beside it,
# in the /var/lib/broker volume. On first start the one-time password of the `admin` user is
# printed to the container's log. For PostgreSQL set BROKER_STORE_URL and BROKER_KEK (compose.yaml
# is an example); for more, mount your own config over /etc/broker/broker.toml, or elsewhere with
# BROKER_CONFIG (see docs/configuration.md and config/examples/).
#
# Plain Dockerfile syntax: it builds with the classic builder as well as with BuildKit.

# --- builder: the package and its dependencies, as wheels, installed into /opt/venv ----------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker/ ./broker/
RUN pip wheel --wheel-dir /wheels . \
 && pip install --no-index --find-links /wheels broker \
 && broker --help >/dev/null

# --- runtime -----------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BROKER_CONFIG=/etc/broker/broker.toml

RUN groupadd --system --gid 10001 broker \
 && useradd --system --uid 10001 --gid broker --home-dir /var/lib/broker --no-create-home \
        --shell /usr/sbin/nologin broker \
 && mkdir -p /var/lib/broker \
 && chown broker:broker /var/lib/broker \
 && chmod 0750 /var/lib/broker

COPY --from=builder /opt/venv /opt/venv
COPY config/policies/ /etc/broker/policies/
COPY config/examples/ /etc/broker/examples/

# The container's config: every setting that differs between deployments comes from the
# environment (BROKER_LISTEN, BROKER_PUBLIC_URL, BROKER_STORE_URL, BROKER_KEK, ...; see the file).
COPY config/container.toml /etc/broker/broker.toml

USER broker
WORKDIR /var/lib/broker
VOLUME ["/var/lib/broker"]
# The default port; with another BROKER_LISTEN, publish that port instead (-p 9000:9000).
EXPOSE 8000

# GET /healthz at the address the config listens on (BROKER_LISTEN, or a mounted file's
# [server] listen): no port is written here. The image has no curl; this is Python's urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "broker.healthcheck"]

ENTRYPOINT ["broker"]
# The config is $BROKER_CONFIG. Use BROKER_LISTEN rather than `serve --listen`, which the health
# check does not see.
CMD ["serve"]
