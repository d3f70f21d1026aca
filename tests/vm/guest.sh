#!/bin/sh
# PID 1 of the test VM: mounts what a container runtime would, then runs the
# driver and powers the machine off (the host reads the serial console).
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "[guest] kernel $(uname -r), $(nproc) CPUs, uptime $(cut -d' ' -f1 /proc/uptime) s"
echo "[guest] cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/usr/bin/python3 -u /opt/pyexec/vm/driver.py
echo "[guest] driver exit status $?"
sync
echo o >/proc/sysrq-trigger
sleep 10
