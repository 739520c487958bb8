# The cdpulse image of all three roles, used by docker-compose.yml. The local stack (make demo)
# needs no Docker.
# The wheel, with the worker's hot core compiled by mypyc (setup.py; BENCHMARKS.md has what
# it is worth): the build needs a C compiler, and mypyc type-checks against the installed
# dependencies, hence the full image and --no-build-isolation.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip install --upgrade pip && pip install '.[compile]' \
    && CDPULSE_COMPILE=1 pip wheel --no-build-isolation --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --create-home --uid 10001 cdpulse && mkdir -p /data && chown cdpulse /data

USER cdpulse
# In a container the HTTP API must listen beyond loopback for Prometheus and the host.
ENV CDPULSE_WEB_HOST=0.0.0.0 \
    CDPULSE_WEB_PORT=6066 \
    CDPULSE_DATA_DIR=/data
EXPOSE 6066 6067 6068
# One image, three roles: docker-compose.yml runs worker, learner and api from it.
CMD ["cdpulse", "worker"]
