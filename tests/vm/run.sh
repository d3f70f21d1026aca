#!/usr/bin/env bash
# The cgroup-v2 test machine: boots Debian's cloud kernel under qemu's
# software emulation (TCG; a KVM guest hangs on hosts of this kind) with the
# unified cgroup v2 hierarchy only, on a debootstrap root filesystem that
# holds the sandbox venv, nsjail, the worker and the pyexec binary, and runs
# tests/vm/driver.py in it as a privileged GKE pod would start pyexec (see
# docs/cgroups.md). The guest reports over the serial console.
#
# usage: tests/vm/run.sh [BINARY]    (default target/release/pyexec)
# Cache: $PYEXEC_VM_CACHE (default /var/cache/pyexec-vm): the kernel and the
# base root image, keyed by the kernel package version and the debootstrap
# inputs; the payload image (venv, binary, worker) is made at each run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary=${1:-$root/target/release/pyexec}
home=${PYEXEC_HOME:-/opt/pyexec}
cache=${PYEXEC_VM_CACHE:-/var/cache/pyexec-vm}
suite=bookworm
mirror=http://deb.debian.org/debian
mkdir -p "$cache"
t0=$SECONDS
lap() { printf '[vm] %-28s %4ss\n' "$1" $((SECONDS - $2)); }

# --- kernel: Debian's cloud kernel, extracted, never installed on the host.
started=$SECONDS
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/{print $2}')
[ -n "$kpkg" ] && [ -n "$kver" ] || { echo "[vm] cannot resolve linux-image-cloud-amd64 (apt-get update?)"; exit 1; }
kdir="$cache/kernel-$kpkg-$kver"
initrd_inputs=$(cat "$root/tests/vm/initramfs-init.sh" | sha256sum | cut -c1-12)
if [ ! -f "$kdir/vmlinuz" ] || [ ! -f "$kdir/initrd-$initrd_inputs.cpio" ]; then
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp/x" "$kdir.tmp/bb" "$kdir.tmp/initrd/bin" "$kdir.tmp/initrd/modules"
  (cd "$kdir.tmp" && apt-get download -q "$kpkg=$kver" busybox-static >/dev/null 2>&1)
  dpkg-deb -x "$kdir.tmp"/linux-image-*.deb "$kdir.tmp/x"
  dpkg-deb -x "$kdir.tmp"/busybox-static_*.deb "$kdir.tmp/bb"
  cp "$kdir.tmp"/x/boot/vmlinuz-* "$kdir.tmp/vmlinuz"
  # virtio (block device) is built as modules in the cloud kernel; ext4 is built in.
  for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    find "$kdir.tmp/x/lib/modules" -name "$m.ko" -exec cp {} "$kdir.tmp/initrd/modules/" \;
  done
  cp "$kdir.tmp/bb/bin/busybox" "$kdir.tmp/initrd/bin/busybox"
  cp "$root/tests/vm/initramfs-init.sh" "$kdir.tmp/initrd/init"
  chmod 755 "$kdir.tmp/initrd/init"
  (cd "$kdir.tmp/initrd" && find . | cpio -o -H newc --quiet) >"$kdir.tmp/initrd-$initrd_inputs.cpio"
  mkdir -p "$kdir"
  mv "$kdir.tmp/vmlinuz" "$kdir.tmp/initrd-$initrd_inputs.cpio" "$kdir/"
  rm -rf "$kdir.tmp"
fi
lap "kernel $kver" $started

# --- base root filesystem: debootstrap minbase + python3 (the venv's base).
started=$SECONDS
packages=python3
# Bump recipe when the steps below change, so caches rebuild.
recipe=1
rkey=$(printf '%s %s %s' "$suite" "$packages" "$recipe" | sha256sum | cut -c1-12)
base="$cache/rootfs-$suite-$rkey.img"
if [ ! -f "$base" ]; then
  rm -rf "$cache/rootfs.tmp"
  debootstrap --variant=minbase --include="$packages" "$suite" "$cache/rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log"; exit 1; }
  rm -rf "$cache/rootfs.tmp/var/cache/apt/archives/"*.deb "$cache/rootfs.tmp/var/lib/apt/lists/"*
  mkdir -p "$cache/rootfs.tmp/opt/pyexec"
  rm -f "$base.tmp"
  mkfs.ext4 -q -F -L pyexec-root -d "$cache/rootfs.tmp" "$base.tmp" 1G
  mv "$base.tmp" "$base"
  rm -rf "$cache/rootfs.tmp"
fi
lap "root filesystem" $started

# --- payload: /opt/pyexec of the guest (venv, nsjail, worker, binary, driver).
started=$SECONDS
work=$(mktemp -d /tmp/pyexec-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
stage="$work/opt"
mkdir -p "$stage/bin" "$stage/vm"
cp -a "$home/venv" "$stage/venv"
cp -a "$home/bin/nsjail" "$stage/bin/nsjail"
mkdir -p "$stage/worker"
cp -r "$root/worker/zygote.py" "$root/worker/pyexec_worker" "$stage/worker/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cp "$binary" "$stage/bin/pyexec"
cp "$root/tests/vm/guest.sh" "$root/tests/vm/driver.py" "$stage/vm/"
size_mib=$(( $(du -sm "$stage" | cut -f1) * 13 / 10 + 64 ))
mkfs.ext4 -q -F -L pyexec-opt -d "$stage" "$work/opt.img" "${size_mib}M"
rm -rf "$stage"
lap "payload image (${size_mib} MiB)" $started

# --- boot. -snapshot keeps the cached root image pristine.
started=$SECONDS
console="$work/console.log"
append="console=ttyS0 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 loglevel=4"
status=0
timeout --foreground "${PYEXEC_VM_TIMEOUT_SECS:-420}" qemu-system-x86_64 \
  -accel tcg -cpu max -smp 2 -m 2048 -nographic -no-reboot -snapshot \
  -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd-$initrd_inputs.cpio" -append "$append" \
  -drive "file=$base,format=raw,if=virtio" -drive "file=$work/opt.img,format=raw,if=virtio,readonly=on" \
  -nic none -serial "file:$console" -display none -monitor none </dev/null || status=$?
lap "boot + tests in the VM" $started
grep -E '^\[(guest|check|driver)\]|^VM-RESULT|Kernel panic|pyexec:' "$console" | sed 's/\r$//' || true
lap "total" $t0
if [ $status -ne 0 ]; then
  echo "[vm] qemu ended with status $status (124: timeout); last console lines:"
  tail -40 "$console"
  exit 1
fi
grep -q '^VM-RESULT pass' "$console" || { echo "[vm] the guest did not report VM-RESULT pass"; tail -60 "$console"; exit 1; }
echo "[vm] cgroup v2 checks passed"
