#!/usr/bin/env bash
# Builds the project's own Dockerfile with podman (no Docker engine needed),
# runs the image --privileged on a loopback port and sends it the seed
# examples plus timeout / memory-limit / isolation cases.
#
#   tests/container/build-and-run.sh [target/release/pyexec]  # build + run + check
#   tests/container/build-and-run.sh --base-only  # only create the base image
#   tests/container/build-and-run.sh --keep       # leave the container running
#   tests/container/build-and-run.sh --from-source
#       build the default way (PYEXEC_BINARY=build: cargo in the Dockerfile's
#       Rust stage). The Rust image cannot be pulled here, so a stand-in with
#       that tag is made from debian + the host's own rustc/cargo (slow: a
#       full release compile in the container; not part of CI).
#
# How it works on a machine without Docker (see ../../../shared/SANDBOX-FACTS.md):
#   - podman + runc + debootstrap from Debian (installed here if missing);
#   - podman's config lives in $PYEXEC_PODMAN_CACHE (default
#     /var/cache/pyexec-podman) and is passed with CONTAINERS_CONF,
#     CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF, so /etc is not
#     touched: runtime runc (crun fails on a hybrid cgroup v1 layout),
#     cgroup_manager cgroupfs, capped default_ulimits;
#   - the Dockerfile's Debian base image (FROM debian:...) is made locally with
#     `debootstrap --variant=minbase` and `podman import`, tagged with the
#     exact name the Dockerfile uses, and the build runs with --pull=never.
#     The rootfs tarball is cached, so reruns skip debootstrap;
#   - the registries are reached through a proxy with its own CA: the host's
#     CA bundle (and a pip.conf pointing at it) is copied into the base rootfs
#     so pip works during the build. The Dockerfile itself stays generic;
#   - the Rust binary built on the host (target/release/pyexec) goes in with
#     --build-arg PYEXEC_BINARY=prebuilt, so CI does not compile twice (a
#     plain `docker build .` compiles it in the Dockerfile's Rust stage).
#
# Talks to 127.0.0.1 only. Final line: `container: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/container"
cache=${PYEXEC_PODMAN_CACHE:-/var/cache/pyexec-podman}
image=${PYEXEC_IMAGE:-localhost/pyexec:test}
workers=${PYEXEC_CONTAINER_WORKERS:-2}
keep=false
base_only=false
from_source=false
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    --base-only) base_only=true ;;
    --from-source) from_source=true ;;
    -*) echo "build-and-run.sh: unknown argument $arg" >&2; exit 64 ;;
    *)
      # The host-built binary (scripts/test.sh passes it): the Dockerfile's
      # prebuilt stage copies target/release/pyexec from the build context.
      if [ "$(realpath "$arg")" != "$(realpath -m "$root/target/release/pyexec")" ]; then
        echo "build-and-run.sh: the binary must be $root/target/release/pyexec (got $arg)" >&2
        exit 64
      fi ;;
  esac
done

log() { printf '\033[1m[container]\033[0m %s\n' "$*" >&2; }
fail_early() {
  log "FAILED: $*"
  echo "container: 0 passed, 1 failed"
  exit 1
}

# ---------------------------------------------------------------- tools
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" uidmap >/dev/null \
    || fail_early "cannot install ${need[*]}"
fi

# ---------------------------------------------------------------- podman config
umask 022
# Run state (locks, container state) per storage dir, so two caches never mix.
runroot=/run/pyexec-podman/$(printf %s "$cache" | md5sum | cut -c1-12)
mkdir -p "$cache/conf" "$cache/storage" "$runroot"
# podman's default ulimits (1048576 open files) are above this machine's hard
# limits, which runc then fails to set: cap them at what the host allows.
cap() { local h; h=$(ulimit -H "$1"); [ "$h" = unlimited ] && h=$2; [ "$h" -gt "$2" ] && h=$2; echo "$h"; }
nofile=$(cap -n 65536)
nproc=$(cap -u 32768)  # above ~pid_max runc is refused here
cat >"$cache/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$runroot/libpod"
EOF
cat >"$cache/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$runroot"
EOF
cat >"$cache/conf/registries.conf" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF="$cache/conf/containers.conf"
export CONTAINERS_STORAGE_CONF="$cache/conf/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$cache/conf/registries.conf"

# ---------------------------------------------------------------- base image
# Every `FROM debian:...` of the Dockerfile names the image we make here.
mapfile -t base_tags < <(sed -nE 's/^FROM[[:space:]]+(--platform=[^[:space:]]+[[:space:]]+)?((docker\.io\/)?(library\/)?debian:[^[:space:]]+).*/\2/p' "$root/Dockerfile" | sort -u)
[ ${#base_tags[@]} -gt 0 ] || fail_early "no FROM debian:... line in Dockerfile"
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Bump when make_rootfs changes, so cached tarballs are rebuilt.
rootfs_rev=2
rootfs_tar="$cache/rootfs-$suite-minbase-r$rootfs_rev.tar"

make_rootfs() {
  local dir
  dir=$(mktemp -d "$cache/rootfs.XXXXXX")
  log "debootstrap --variant=minbase $suite (about a minute; cached afterwards)"
  if ! debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -20 "$cache/debootstrap.log" >&2
    rm -rf "$dir"
    fail_early "debootstrap failed (log: $cache/debootstrap.log)"
  fi
  # Same apt sources and dpkg excludes as the official debian:*-slim image.
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  printf 'APT::Install-Recommends "false";\n' >"$dir/etc/apt/apt.conf.d/docker-norecommends"
  # This machine's CA bundle (it holds the registry proxy's CA), so pip can
  # reach PyPI during the build. A file of its own: installing Debian's
  # ca-certificates in a stage regenerates /etc/ssl/certs/ca-certificates.crt.
  mkdir -p "$dir/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/build-host-ca.pem"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/build-host-ca.pem\n' >"$dir/etc/pip.conf"
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/* "$dir"/tmp/* \
    "$dir"/usr/share/doc "$dir"/usr/share/man "$dir"/usr/share/locale "$dir"/usr/share/info
  mkdir -p "$dir/usr/share/doc"
  tar -C "$dir" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$dir"
}

for tag in "${base_tags[@]}"; do
  case "$tag" in */*) full=$tag ;; *) full="docker.io/library/$tag" ;; esac
  if podman image exists "$full" \
    && [ "$(podman image inspect --format '{{index .Labels "pyexec.rootfs-rev"}}' "$full" 2>/dev/null)" = "$rootfs_rev" ]; then
    continue
  fi
  [ -s "$rootfs_tar" ] || make_rootfs
  log "podman import -> $full"
  podman import --change 'CMD ["/bin/bash"]' --change "LABEL pyexec.rootfs-rev=$rootfs_rev" \
    "$rootfs_tar" "$full" >/dev/null \
    || fail_early "podman import failed"
done
if $base_only; then
  log "base image(s) ready: ${base_tags[*]}"
  exit 0
fi

# ---------------------------------------------------------------- rust stand-in
make_rust_standin() {
  local tag full ctx toolchain
  tag=$(sed -nE 's/^FROM[[:space:]]+([^[:space:]]*rust:[^[:space:]]+)[[:space:]]+AS[[:space:]]+binary-build.*/\1/p' "$root/Dockerfile")
  [ -n "$tag" ] || fail_early "no Rust stage (FROM ...rust:... AS binary-build) in Dockerfile"
  case "$tag" in */*) full=$tag ;; *) full="docker.io/library/$tag" ;; esac
  if podman image exists "$full"; then return; fi
  toolchain=$(rustc --print sysroot) || fail_early "--from-source needs a host Rust toolchain"
  ctx=$(mktemp -d "$cache/rust-standin.XXXXXX")
  log "making a stand-in for $full from $toolchain"
  mkdir -p "$ctx/rust/lib/rustlib"
  cp -a "$toolchain/bin" "$ctx/rust/"
  cp -a "$toolchain"/lib/*.so* "$ctx/rust/lib/" 2>/dev/null || true
  cp -a "$toolchain/lib/rustlib/x86_64-unknown-linux-gnu" "$ctx/rust/lib/rustlib/"
  if [ -d "$toolchain/libexec" ]; then cp -a "$toolchain/libexec" "$ctx/rust/"; fi
  {
    echo "FROM ${base_tags[0]}"
    echo 'RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*'
    echo 'COPY rust /usr/local/rust'
    echo 'ENV PATH=/usr/local/rust/bin:$PATH CARGO_HOME=/usr/local/cargo CARGO_HTTP_CAINFO=/etc/ssl/build-host-ca.pem'
  } >"$ctx/Containerfile"
  if ! podman build --pull=never -t "$full" -f "$ctx/Containerfile" "$ctx" >"$cache/rust-standin.log" 2>&1; then
    tail -20 "$cache/rust-standin.log" >&2
    rm -rf "$ctx"
    fail_early "stand-in Rust image failed"
  fi
  rm -rf "$ctx"
}

# ---------------------------------------------------------------- build
[ -f "$root/worker/zygote.py" ] && [ -d "$root/worker/pyexec_worker" ] \
  || fail_early "worker/zygote.py and worker/pyexec_worker/ are needed in the build context"
if $from_source; then
  make_rust_standin
  binary_mode=build
else
  binary_mode=prebuilt
  if [ ! -x "$root/target/release/pyexec" ]; then
    log "cargo build --release (target/release/pyexec is missing)"
    (cd "$root" && cargo build --release --locked --quiet) || fail_early "cargo build failed"
  fi
fi
log "podman build --pull=never -t $image (PYEXEC_BINARY=$binary_mode)"
build_start=$(date +%s)
if ! podman build --pull=never --layers \
    --build-arg PYEXEC_BINARY="$binary_mode" \
    -t "$image" -f "$root/Dockerfile" "$root" >"$cache/build.log" 2>&1; then
  tail -40 "$cache/build.log" >&2
  fail_early "podman build failed (log: $cache/build.log)"
fi
build_secs=$(( $(date +%s) - build_start ))
# Keep the layer cache of recent builds (reruns take seconds), drop old ones.
podman image prune -f --filter until=168h >/dev/null 2>&1 || true
size_bytes=$(podman image inspect --format '{{.Size}}' "$image")
log "built $image in ${build_secs}s"

# ---------------------------------------------------------------- run
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
name="pyexec-ct-$$"
# An API token, as the Deployment passes it from its Secret: the checks send
# it, and check that a run cannot see it.
token_file=$(mktemp)
python3 -c 'import secrets; print(secrets.token_hex(16))' >"$token_file"
cleanup() {
  rm -f "$token_file"
  if ! $keep; then
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
log "podman run --privileged -p 127.0.0.1:$port:8080 $image"
run_start=$(python3 -c 'import time; print(time.time())')
# Same shape as the Kubernetes pod (deploy/base/deployment.yaml): privileged,
# read-only root filesystem, a writable /tmp of its own.
podman run -d --privileged --name "$name" \
  --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=64m,mode=1777 \
  -p "127.0.0.1:$port:8080" \
  -e PYEXEC_WORKERS="$workers" \
  -e PYEXEC_API_TOKEN="$(cat "$token_file")" \
  "$image" >/dev/null || fail_early "podman run failed"

set +e
python3 "$here/smoke.py" \
  --url "http://127.0.0.1:$port" \
  --container "$name" \
  --token-file "$token_file" \
  --started-at "$run_start" \
  --image-size "$size_bytes" \
  --build-secs "$build_secs"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  log "container logs (last 40 lines):"
  podman logs "$name" 2>&1 | tail -40 >&2 || true
fi
if $keep; then
  log "container $name left running on http://127.0.0.1:$port"
fi
exit $rc
