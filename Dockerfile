# syntax=docker/dockerfile:1.7
# plipbot: one image for the bot and every worker (the command picks the role; entrypoint `plipbot`).
#
#   docker build -t plipbot:local .                                   # CUDA torch wheels (PyPI default)
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t plipbot:cpu .
#   docker build --build-arg BAKE_MODEL=plip -t plipbot:plip .        # weights inside the image
#
# Model weights live in a volume at /data/models (docker-compose.yml), not in the image, unless
# BAKE_MODEL names a registry model. tests/deploy/test_dockerfile.py checks the paths and pins below.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------------------ build
FROM ${PYTHON_IMAGE} AS build

# Pinned like install.sh, and installed first, so pip never resolves another (multi-GB) torch.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# Empty: PyPI, whose Linux x86_64 wheels are the CUDA builds (CUDA runtime as pip packages; the host
# needs only the NVIDIA driver and container toolkit). A CPU-only index makes a much smaller image.
ARG TORCH_INDEX_URL=

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

WORKDIR /src
# Metadata first, then the packages listed in pyproject.toml ([tool.setuptools.packages.find]).
COPY pyproject.toml README.md ./
COPY plipbot/ plipbot/
COPY model/ model/
COPY ingest/ ingest/
COPY store/ store/
COPY workers/ workers/
COPY bot/ bot/
COPY evaluation/ evaluation/
COPY learning/ learning/
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
    && plipbot --version

# ---------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# Tesseract reads text burned into images (slide labels, forms) for the PHI screen (ingest/ocr.py).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*

ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" plipbot \
    && useradd --system --uid "${UID}" --gid plipbot --home-dir /home/plipbot --create-home \
        --shell /usr/sbin/nologin plipbot \
    && mkdir -p /data/models /data/thumbnails /data/cache \
    && chown -R plipbot:plipbot /data

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PLIPBOT_DATA_DIR=/data \
    HF_HOME=/data/cache/huggingface

# Numeric, so orchestrators can verify "non-root" without reading /etc/passwd.
USER ${UID}:${GID}
WORKDIR /home/plipbot

# Optional: download, verify and convert a registry model into the image (the raw Hub download is
# dropped; only the converted weights stay). A new, empty `models` volume starts as a copy of them.
ARG BAKE_MODEL=
RUN if [ -n "${BAKE_MODEL}" ]; then \
        plipbot model fetch "${BAKE_MODEL}" && rm -rf /data/models/hub; \
    fi

# docker-compose.yml mounts named volumes on /data/models and /data/thumbnails (they must survive a
# new image); the rest of /data is rebuildable. No VOLUME here: it would leave anonymous volumes behind.
EXPOSE 9108
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["plipbot", "doctor", "--only", "broker,store,ledger", "--timeout", "3"]

ENTRYPOINT ["plipbot"]
CMD ["run"]
