#!/usr/bin/env bash
# Starts the rendered GKE Deployment (deploy/overlays/gke, rendered by
# render_kustomize.py) with `podman kube play`, unchanged, on the image
# build-and-run.sh builds (set as the image, as `images:` would), and
# plays the kubelet's part from the host: startup, readiness and liveness
# probes on the pod IP as the manifest defines them, `pyexec doctor` in the
# pod, and the deletion sequence (preStop, SIGTERM, the grace period)
# during an in-flight run. What podman honours of the pod spec and what it
# ignores: docs/deployment.md.
#
#   tests/container/kube-play.sh          # needs the image; builds it if missing
#
# Final line: `kube-play: N passed, M failed`.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/container"
cache=${PYEXEC_PODMAN_CACHE:-/var/cache/pyexec-podman}
image=${PYEXEC_IMAGE:-localhost/pyexec:test}
venv=${PYEXEC_HOME:-/opt/pyexec}/tools-venv

log() { printf '\033[1m[kube-play]\033[0m %s\n' "$*" >&2; }
fail_early() {
  log "FAILED: $*"
  echo "kube-play: 0 passed, 1 failed"
  exit 1
}

# shellcheck source=podman-env.sh
. "$here/podman-env.sh"
if [ -x "$venv/bin/python" ]; then
  export PATH="$venv/bin:$PATH"
fi
python3 -c 'import yaml' 2>/dev/null || fail_early "needs PyYAML (python/requirements-tools.txt)"

if ! podman image exists "$image"; then
  log "$image is missing: tests/container/build-and-run.sh --build-only"
  "$here/build-and-run.sh" --build-only || fail_early "cannot build $image"
fi
exec python3 -u "$here/kube_play.py" --image "$image" --overlay "$root/deploy/overlays/gke"
