# One image for every ragsync component; the command picks the component (scheduler, fetcher, embedder, ...).
# It runs as the fixed non-root user ragsync (UID and GID 10001), which the Kubernetes manifests name too
# (runAsUser: 10001). Nothing is written outside DATA_DIR (/app/data) and /tmp, so the root filesystem can be
# read-only; both are writable by that user here, and are volumes in Kubernetes.
FROM python:3.11-slim
RUN groupadd --gid 10001 ragsync \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ragsync
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
# streams/, producers/ and proto/ install as ragsync.streams, ragsync.producers and ragsync.proto (pyproject.toml)
COPY ragsync ragsync
COPY producers producers
COPY streams streams
COPY proto proto
RUN pip install --no-cache-dir . && install -d -o 10001 -g 10001 /app/data
ENV HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DATA_DIR=/app/data
# Numeric, so that Kubernetes can check runAsNonRoot without a runAsUser.
USER 10001:10001
ENTRYPOINT ["ragsync", "--log-level", "INFO"]
