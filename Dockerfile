# wsops in a container: slim, non-root, installed from this tree (a wheel of the project; no
# dev extras). deploy/kubernetes runs it.
#   docker build -t wsops:0.1.0 .
#   docker run --rm -p 8765:8765 wsops:0.1.0 serve --host 0.0.0.0 --allow-anonymous
# The wheel is built in a stage with a C compiler (setup.py's one extension, the histogram
# counting of wsops/instrumentation/_counting.c); the image itself carries no compiler.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY wsops ./wsops
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/wsops-*.whl && rm -rf /wheels \
    && python -c "from wsops.instrumentation import pycounts; assert pycounts.COMPILED" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin wsops \
    && wsops serve --check-config --allow-anonymous

USER 10001:10001
WORKDIR /tmp
EXPOSE 8765 9765
# The admin listener's liveness endpoint (the image's own health; Kubernetes probes it too).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9765/healthz', timeout=2)"]
ENTRYPOINT ["wsops"]
CMD ["serve", "--host=0.0.0.0", "--admin-host=0.0.0.0"]
