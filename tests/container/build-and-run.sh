#!/usr/bin/env bash
# Builds the project's own Dockerfile with podman (no Docker engine needed),
# the default way, from source: `podman build --target binary-build` (the
# Rust stage compiles the crate from exactly what its COPY lines and
# .dockerignore give it), then the whole image. Runs the image --privileged
# on a loopback port, sends it the seed examples plus timeout / memory-limit /
# isolation cases, and runs `pyexec doctor` in the image (privileged: must
# pass; unprivileged: must fail).
#
#   tests/container/build-and-run.sh              # from source + run + check (CI)
#   tests/container/build-and-run.sh --prebuilt [target/release/pyexec]
#       copy the host-built binary instead (PYEXEC_BINARY=prebuilt; no
#       compile in the container)
#   tests/container/build-and-run.sh --build-only # build the image, run nothing
#   tests/container/build-and-run.sh --base-only  # only create the base images
#   tests/container/build-and-run.sh --keep       # leave the container running
#
# How it works on a machine without Docker (see docs/deployment.md):
#   - podman + runc + debootstrap from Debian, podman's config passed by
#     environment so /etc is not touched (podman-env.sh);
#   - the Dockerfile's Debian base image (FROM debian:...) is made locally with
#     `debootstrap --variant=minbase` and `podman import`, tagged with the
#     exact name the Dockerfile uses, and the build runs with --pull=never.
#     The rootfs tarball is cached, so reruns skip debootstrap;
#   - the Rust stage's FROM image (rust:...-slim-bookworm) is made the same
#     way: that rootfs plus gcc/libc6-dev and the host's own rustup toolchain
#     (same rustc version as the tag), tagged with the FROM name. Cached and
#     rebuilt when the host toolchain changes;
#   - the registries are reached through a proxy with its own CA: the host's
#     CA bundle (and a pip.conf pointing at it) is copied into the base rootfs
#     so pip and cargo work during the build. The Dockerfile itself stays
#     generic;
#   - the Rust stage's cache mounts (crates, target/) and podman's layer cache
#     persist under the cache directory and /var/tmp between runs on one
#     machine, so a rerun after a change to src/ compiles only the crate.
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
build_only=false
from_source=true
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    --base-only) base_only=true ;;
    --build-only) build_only=true ;;
    --prebuilt) from_source=false ;;
    --from-source) from_source=true ;;
    -*) echo "build-and-run.sh: unknown argument $arg" >&2; exit 64 ;;
    *)
      # The host-built binary: the Dockerfile's prebuilt stage copies
      # target/release/pyexec from the build context.
      from_source=false
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

# ---------------------------------------------------------------- tools, podman config
# shellcheck source=podman-env.sh
. "$here/podman-env.sh"

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
# ---------------------------------------------------------------- rust stand-in
# The Rust stage's FROM image cannot be pulled here: make one with that tag
# from the debootstrap rootfs plus the host's toolchain, laid out like the
# official image (CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH).
make_rust_standin() {
  local tag full ctx toolchain version want
  tag=$(sed -nE 's/^FROM[[:space:]]+([^[:space:]]*rust:[^[:space:]]+)[[:space:]]+AS[[:space:]]+binary-build.*/\1/p' "$root/Dockerfile")
  [ -n "$tag" ] || fail_early "no Rust stage (FROM ...rust:... AS binary-build) in Dockerfile"
  case "$tag" in */*) full=$tag ;; *) full="docker.io/library/$tag" ;; esac
  toolchain=$(cd "$root" && rustc --print sysroot) || fail_early "building from source needs a host Rust toolchain (rustup)"
  version=$(cd "$root" && rustc --version)
  # The tag names a Rust version; the stand-in must be that version.
  want=$(printf %s "$tag" | sed -nE 's/.*rust:([0-9]+\.[0-9]+).*/\1/p')
  case "$version" in "rustc $want."*) ;; *) fail_early "$full wants Rust $want, the host has $version" ;; esac
  if podman image exists "$full" \
    && [ "$(podman image inspect --format '{{index .Labels "pyexec.toolchain"}}' "$full" 2>/dev/null)" = "$version r$rootfs_rev" ]; then
    return
  fi
  ctx=$(mktemp -d "$cache/rust-standin.XXXXXX")
  log "making $full from ${base_tags[0]} + $toolchain ($version)"
  mkdir -p "$ctx/rust/lib/rustlib"
  cp -a "$toolchain/bin" "$ctx/rust/"
  cp -a "$toolchain"/lib/*.so* "$ctx/rust/lib/" 2>/dev/null || true
  cp -a "$toolchain/lib/rustlib/x86_64-unknown-linux-gnu" "$ctx/rust/lib/rustlib/"
  if [ -d "$toolchain/libexec" ]; then cp -a "$toolchain/libexec" "$ctx/rust/"; fi
  {
    echo "FROM ${base_tags[0]}"
    echo 'RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*'
    echo 'COPY rust /usr/local/rust'
    echo 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH CARGO_HOME=/usr/local/cargo CARGO_HTTP_CAINFO=/etc/ssl/build-host-ca.pem'
    echo 'RUN mkdir -p /usr/local/cargo && cargo --version && rustc --version'
    echo "LABEL pyexec.toolchain=\"$version r$rootfs_rev\""
  } >"$ctx/Containerfile"
  if ! podman build --pull=never -t "$full" -f "$ctx/Containerfile" "$ctx" >"$cache/rust-standin.log" 2>&1; then
    tail -20 "$cache/rust-standin.log" >&2
    rm -rf "$ctx"
    fail_early "stand-in Rust image failed (log: $cache/rust-standin.log)"
  fi
  rm -rf "$ctx"
}

if $base_only; then
  if $from_source; then make_rust_standin; fi
  log "base image(s) ready: ${base_tags[*]}"
  exit 0
fi

# ---------------------------------------------------------------- build
[ -f "$root/worker/zygote.py" ] && [ -d "$root/worker/pyexec_worker" ] \
  || fail_early "worker/zygote.py and worker/pyexec_worker/ are needed in the build context"
if $from_source; then
  standin_start=$(date +%s)
  make_rust_standin
  log "Rust stand-in ready in $(( $(date +%s) - standin_start ))s"
  binary_mode=build
  # The Rust stage alone first: it is what `docker build .` compiles, from
  # nothing but what its COPY lines and .dockerignore let in.
  log "podman build --target binary-build (cargo build --release in the Rust stage)"
  compile_start=$(date +%s)
  if ! podman build --pull=never --layers --target binary-build \
      -t localhost/pyexec-binary-build:test -f "$root/Dockerfile" "$root" >"$cache/build-binary.log" 2>&1; then
    tail -40 "$cache/build-binary.log" >&2
    fail_early "the Dockerfile's Rust stage does not compile (log: $cache/build-binary.log)"
  fi
  compile_secs=$(( $(date +%s) - compile_start ))
  log "Rust stage built in ${compile_secs}s"
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
if $build_only; then
  exit 0
fi

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
# `pyexec doctor` in the image, as a platform engineer runs it in a pod:
# privileged it must pass, unprivileged it must fail and say why.
python3 "$here/doctor_in_container.py" --image "$image" --workers "$workers" || rc=1
set -e
if [ $rc -ne 0 ]; then
  log "container logs (last 40 lines):"
  podman logs "$name" 2>&1 | tail -40 >&2 || true
fi
if $keep; then
  log "container $name left running on http://127.0.0.1:$port"
fi
if $from_source; then
  log "compile in the Rust stage: ${compile_secs}s; whole image: ${build_secs}s (PYEXEC_BINARY=build)"
fi
exit $rc
