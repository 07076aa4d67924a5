# wsops in a container: slim, non-root, installed from this tree as the README's quick start
# does (pip install of the project; no dev extras). deploy/kubernetes runs it.
#   docker build -t wsops:0.1.0 .
#   docker run --rm -p 8765:8765 wsops:0.1.0 serve --host 0.0.0.0 --allow-anonymous
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY wsops ./wsops
RUN pip install . && rm -rf /src \
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
