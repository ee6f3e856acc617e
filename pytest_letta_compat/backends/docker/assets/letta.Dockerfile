# Behaves like the official letta/letta:<version> image: every start migrates the database
# to the version's alembic head, then runs `letta server` (letta-entrypoint.sh).
# Built by `letta-compat images build` from package registries only (Debian, PyPI).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 TZ=UTC PYTHONUNBUFFERED=1
# gcc, python3-dev and libpq-dev: psycopg2 (a Letta dependency) builds from source
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libpq-dev \
      redis-server ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# pip and uv reach PyPI through whatever TLS interception the build host trusts
COPY ca-certificates.crt /etc/letta-compat/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/letta-compat/ca-certificates.crt \
    PIP_CERT=/etc/letta-compat/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/letta-compat/ca-certificates.crt
ARG UV_VERSION
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir --quiet "uv==${UV_VERSION}"

# No wheel ships Letta's alembic scripts: the newest sdist's scripts run in a venv of that
# version, stopping at the target version's head (the same schema as its own scripts).
# This layer is shared by the images of every Letta version.
ARG MIGRATIONS_SOURCE
ARG MIGRATIONS_EXCLUDE_NEWER
RUN /opt/uv/bin/uv venv --quiet --python /usr/bin/python3 /opt/letta-migrator \
 && /opt/uv/bin/uv pip install --quiet --no-cache --python /opt/letta-migrator/bin/python \
      --exclude-newer "${MIGRATIONS_EXCLUDE_NEWER}" "letta[postgres,server,redis]==${MIGRATIONS_SOURCE}"
COPY migrations/ /opt/letta-migrations/

ARG LETTA_VERSION
ARG LETTA_EXCLUDE_NEWER
ARG LETTA_ALEMBIC_HEAD
ARG LETTA_PINS=""
RUN if [ "${LETTA_VERSION}" = "${MIGRATIONS_SOURCE}" ]; then ln -s /opt/letta-migrator /opt/letta; else \
      /opt/uv/bin/uv venv --quiet --python /usr/bin/python3 /opt/letta \
      && /opt/uv/bin/uv pip install --quiet --no-cache --python /opt/letta/bin/python \
           --exclude-newer "${LETTA_EXCLUDE_NEWER}" "letta[postgres,server,redis]==${LETTA_VERSION}" ${LETTA_PINS}; fi

COPY letta-entrypoint.sh letta-migrate.sh /usr/local/bin/
ENV PATH=/opt/letta/bin:$PATH LETTA_VERSION=${LETTA_VERSION} LETTA_ALEMBIC_HEAD=${LETTA_ALEMBIC_HEAD} \
    HOST=0.0.0.0 PORT=8283
LABEL org.letta-compat.image="letta" org.letta-compat.letta-version="${LETTA_VERSION}" \
      org.letta-compat.alembic-head="${LETTA_ALEMBIC_HEAD}" \
      org.letta-compat.migrate-command="/usr/local/bin/letta-migrate.sh"
WORKDIR /app
EXPOSE 8283
ENTRYPOINT ["/usr/local/bin/letta-entrypoint.sh"]
