# syntax=docker/dockerfile:1.7
# broker: a federated identity token broker.
#
#   docker build -t broker .
#   docker run -p 8000:8000 -v broker-data:/var/lib/broker broker
#
# The image's config (/etc/broker/broker.toml, below) is the embedded default adapted to a
# container: it listens on 0.0.0.0:8000 and keeps SQLite, and the key-encryption key generated
# beside it, in the /var/lib/broker volume. On first start the one-time password of the `admin`
# user is printed to the container's log. For real deployments mount your own config over
# /etc/broker (see docs/configuration.md and config/examples/) and set BROKER_KEK.

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

# The container's config. The quoted delimiter turns off build-time ${...} expansion, so
# ${ENV} references (if you add any) are left for broker to substitute at start-up.
COPY <<'EOF' /etc/broker/broker.toml
# broker in a container: SQLite in the /var/lib/broker volume and the built-in `local` provider.
# Without [keys].kek, the key-encryption key is generated once into /var/lib/broker/broker.kek,
# with a warning: back it up with the database, or set kek = "${BROKER_KEK}" for production.

[server]
listen = "0.0.0.0:8000"
public_url = "http://127.0.0.1:8000"   # the issuer URL: set it to the URL people and apps use
allowed_redirect_domains = []
trusted_proxies = []
account_id = "000000000000"

[store]
url = "sqlite:////var/lib/broker/broker.db"

[keys]
algorithm = "EdDSA"
rotate_every = "7d"

[session]
cookie_name = "broker_session"
lifetime = "8h"
idle_timeout = "1h"

[providers.local]
type = "local"

[roles.admin]
description = "Administers this broker"
max_session_duration = "8h"
trust_policy = "policies/admin-trust.json"
policies = ["policies/admin-access.json"]
EOF

USER broker
WORKDIR /var/lib/broker
VOLUME ["/var/lib/broker"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["broker"]
CMD ["serve", "--config", "/etc/broker/broker.toml"]
