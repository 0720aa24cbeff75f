# paperboy in one container: `paperboy run` (web on 0.0.0.0:8000) as a non-root user, state
# under the /data volume, settings from /config.
#
# Two stages: the first installs paperboy and its dependencies into a venv; the second copies
# only that venv onto a clean base, so no build files, pip cache or wheel is left in the image.
# Every dependency ships as a wheel, so neither stage needs a compiler.
#
# The base comes from a build argument so that machines without a registry can build it
# (../shared/tools/image-check passes a local Debian base with python3 and venv). Both stages
# must use the same base: the venv's python3 is the base's.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/paperboy
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY templates /src/templates
# The runtime needs neither pip nor setuptools (a venv of Python 3.11 carries both).
RUN /opt/paperboy/bin/python3 -m pip install /src \
    && /opt/paperboy/bin/python3 -m pip uninstall --yes pip setuptools

FROM ${BASE_IMAGE}
# VERSION is kept in step with pyproject's by tests/test_deploy.py; SOURCE_URL is where the
# publisher keeps the code (--build-arg SOURCE_URL=https://...), unknown to a local build.
ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="paperboy" \
      org.opencontainers.image.description="Self-hosted daily digests and alerts for new research papers" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"

# Subscribers' time zones: Python's tzdata package is a dependency; the OS zoneinfo is there
# too for anything else in the image (and for TZ=...), installed only if the base lacks it.
RUN if [ ! -e /usr/share/zoneinfo/Etc/UTC ]; then \
        apt-get update -qq \
        && apt-get install -y -qq --no-install-recommends tzdata >/dev/null \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin paperboy \
    && mkdir -p /data /config && chown paperboy /data

COPY --from=build /opt/paperboy /opt/paperboy
COPY config/paperboy.toml /config/paperboy.toml

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/paperboy/bin:$PATH \
    PAPERBOY_DATA_DIR=/data \
    PAPERBOY_CONFIG=/config/paperboy.toml \
    PAPERBOY_PROFILES_FILE=/config/profiles.toml \
    PAPERBOY_WEB__HOST=0.0.0.0 \
    PAPERBOY_WEB__PORT=8000

USER paperboy
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8000

# Asks /healthz on the loopback at web.port; a check answers within the timeout or fails.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["paperboy", "healthcheck", "--timeout", "5"]

ENTRYPOINT ["paperboy"]
CMD ["run"]
