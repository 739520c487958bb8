# The cdpulse image of all three roles, used by docker-compose.yml. The local stack (make demo)
# needs no Docker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Metadata and sources only (.dockerignore keeps .venv, .run and .cache out of the context).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home --uid 10001 cdpulse && mkdir -p /data && chown cdpulse /data

USER cdpulse
# In a container the HTTP API must listen beyond loopback for Prometheus and the host.
ENV CDPULSE_WEB_HOST=0.0.0.0 \
    CDPULSE_WEB_PORT=6066 \
    CDPULSE_DATA_DIR=/data
EXPOSE 6066 6067 6068
# One image, three roles: docker-compose.yml runs worker, learner and api from it.
CMD ["cdpulse", "worker"]
