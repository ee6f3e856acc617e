# PostgreSQL 15 with pgvector, a local stand-in for pgvector/pgvector:pg15 (the major the
# official letta image uses). Debian bookworm has no pgvector package, so the extension is
# built from Debian's source package (newer suite, verified by apt) against postgresql-15.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ARG DEBIAN_MIRROR=http://deb.debian.org/debian
ARG PGVECTOR_SOURCE_SUITE=trixie
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8
RUN set -eux \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-server-dev-15 build-essential dpkg-dev \
 && echo "deb-src ${DEBIAN_MIRROR} ${PGVECTOR_SOURCE_SUITE} main" > /etc/apt/sources.list.d/pgvector-src.list \
 && apt-get update \
 && mkdir /usr/src/pgvector && cd /usr/src/pgvector && apt-get source pgvector \
 && cd pgvector-*/ && make OPTFLAGS="" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config \
 && make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config \
 && cd / && rm -rf /usr/src/pgvector /etc/apt/sources.list.d/pgvector-src.list \
 && apt-get purge -y --auto-remove postgresql-server-dev-15 build-essential dpkg-dev \
 && rm -rf /var/lib/apt/lists/* \
 && test -f /usr/share/postgresql/15/extension/vector.control

COPY pg-entrypoint.sh /usr/local/bin/
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
RUN mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql \
 && chown postgres:postgres /var/run/postgresql
LABEL org.letta-compat.image="pgvector" org.letta-compat.postgres-major="15"
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/pg-entrypoint.sh"]
CMD ["postgres"]
