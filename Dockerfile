# paperboy in one container: `paperboy run` as a non-root user, state under /data.
# The base comes from a build argument so that machines without a registry can build it
# (../shared/tools/image-check passes a local Debian base with python3 and venv).
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/paperboy/bin:$PATH \
    PAPERBOY_DATA_DIR=/data \
    PAPERBOY_CONFIG=/config/paperboy.toml \
    PAPERBOY_PROFILES_FILE=/config/profiles.toml

RUN python3 -m venv /opt/paperboy
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY templates /src/templates
RUN /opt/paperboy/bin/pip install --no-cache-dir /src && rm -rf /src
COPY config/paperboy.toml /config/paperboy.toml

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin paperboy \
    && mkdir -p /data && chown paperboy /data
USER paperboy
VOLUME ["/data"]
WORKDIR /data
# The web listens on every interface of the container (publish it, or put a proxy in front).
ENV PAPERBOY_WEB__HOST=0.0.0.0
EXPOSE 8000

ENTRYPOINT ["paperboy"]
CMD ["run"]
