# The registry service: `registry serve` as an unprivileged user, its data in a volume.
#
#   pybuild build -t pybuild/registry:latest .            (or DOCKER_BUILDKIT=1 docker build)
#   docker run -d -p 127.0.0.1:5000:5000 -v registry-data:/var/lib/registry pybuild/registry:latest
#
# Settings: /etc/registry/registry.toml (deploy/registry.toml; mount your own over it), then
# REGISTRY_* environment variables, then flags after the image name (`serve --log-level debug`).
FROM debian:bookworm AS base

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && python3 -m venv /opt/registry \
 && useradd --uid 10001 --user-group --home-dir /var/lib/registry \
        --no-create-home --shell /usr/sbin/nologin registry

# The dependencies alone first: this layer stays cached while only the sources change.
# Behind a network that intercepts TLS, lend the build host's CA bundle to this step
# (`--secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt`); without it the image's is used.
RUN --mount=type=bind,source=pyproject.toml,target=/tmp/pyproject.toml \
    --mount=type=cache,target=/root/.cache/pip,id=pybuild-registry-pip \
    --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/registry/bin/python -c 'import tomllib; p = tomllib.load(open("/tmp/pyproject.toml", "rb")); print(*p["build-system"]["requires"], *p["project"]["dependencies"], sep="\n")' \
        >/tmp/requirements.txt \
 && /opt/registry/bin/pip install --disable-pip-version-check -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project as a wheel, built from its sources in a stage of its own.
FROM base AS wheel
COPY . /src
RUN /opt/registry/bin/pip wheel --disable-pip-version-check --no-cache-dir --no-deps \
        --no-build-isolation --wheel-dir /wheels /src

# The image: the base with the wheel installed (the sources stay out of it).
FROM base
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    /opt/registry/bin/pip install --disable-pip-version-check --no-cache-dir --no-deps \
        /wheels/*.whl
COPY deploy/registry.toml /etc/registry/registry.toml
COPY deploy/healthcheck.py /opt/registry/healthcheck.py
RUN install -d -o registry -g registry -m 0750 /var/lib/registry \
 && install -d -o registry -g registry -m 0700 /var/lib/registry/tls \
 && install -d -o registry -g registry -m 0755 /var/lib/registry/tls/trust

ENV PATH=/opt/registry/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    REGISTRY_CONFIG=/etc/registry/registry.toml \
    PYTHONDONTWRITEBYTECODE=1
USER registry
WORKDIR /var/lib/registry
EXPOSE 5000
VOLUME /var/lib/registry
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/registry/healthcheck.py"]
ENTRYPOINT ["registry"]
CMD ["serve"]
