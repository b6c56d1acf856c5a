# `cluster heal --watch` as a container, to run inside the cluster it heals: `cluster render --heal-manifest` prints
# its Deployment, which mounts the configuration at /etc/cluster/cluster.toml.
#   docker build -t cluster-heal:<version> .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY provision ./provision
COPY templates ./templates
COPY userdata ./userdata
RUN pip install . && rm -rf /src

# A numeric non-root user, so Kubernetes' runAsNonRoot can check it (the Deployment runs it as 10001 too).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin heal
USER 10001
WORKDIR /

ENTRYPOINT ["cluster", "heal", "--watch"]
CMD ["-c", "/etc/cluster/cluster.toml"]
