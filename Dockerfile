# The LLO Docker hooks image (the Metacontroller hook service, metacontroller/deployment.yaml).
#
#   docker build -t llo-docker-hooks:0.1.0 .
#
# Installs the project without the `ieapi` extra: the hooks never talk to a Docker Engine (they
# import only the IE API's wire contract, ieapi/contract.py), so the docker SDK stays out.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Offline builds (no package index): scripts/images/wheelhouse.sh fills build/wheels, then
#   --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels
# pip reads both from the environment; they exist in this build stage only. README.md is listed
# so that this COPY has a source when build/wheels does not exist (the classic builder refuses a
# COPY whose only pattern matches nothing); pip ignores it.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
COPY README.md build/wheel[s] /wheels/
# python3, not python: Debian-based images (scripts/images/base-image.sh) have no `python`.
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hooks ./hooks
COPY ieapi ./ieapi
COPY llo_serving ./llo_serving
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/python -c "import hooks, flask, gunicorn, llo_serving.logs, llo_serving.metrics"

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 llo \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin llo
COPY --from=build /opt/venv /opt/venv
# Numeric, so Kubernetes can check runAsNonRoot without resolving a name.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# The slim base has no curl: ask /healthz with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3).status == 200 else 1)"]
# hooks/__main__.py: gunicorn with hooks.gunicorn_conf (settings from LLO_* variables).
CMD ["python", "-m", "hooks"]
