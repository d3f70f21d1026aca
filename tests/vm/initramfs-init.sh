#!/bin/busybox sh
# Init of the test VM's initramfs: loads the virtio block driver (a module in
# Debian's cloud kernel), mounts the real root filesystem and the read-only
# /opt/pyexec payload, and hands over to tests/vm/guest.sh. The initramfs is
# only a loader: nsjail cannot pivot_root out of an initramfs root.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
  /bin/busybox insmod /modules/$m.ko || echo "[guest] insmod $m failed"
done
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  [ -b /dev/vdb ] && break
  /bin/busybox sleep 0.2
done
/bin/busybox mount -t ext4 /dev/vda /newroot || echo "[guest] cannot mount the root filesystem"
/bin/busybox mount -t ext4 -o ro /dev/vdb /newroot/opt/pyexec || echo "[guest] cannot mount /opt/pyexec"
/bin/busybox umount /proc
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /bin/sh /opt/pyexec/vm/guest.sh
