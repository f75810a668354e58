# One image for every ragsync component; the command picks the component (scheduler, fetcher, embedder, ...).
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
# streams/, producers/ and proto/ install as ragsync.streams, ragsync.producers and ragsync.proto (links in ragsync/)
COPY ragsync ragsync
COPY producers producers
COPY streams streams
COPY proto proto
RUN pip install --no-cache-dir .
ENV HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["ragsync", "--log-level", "INFO"]
