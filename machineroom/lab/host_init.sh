#!/bin/sh
# PID 1 of one machineroom lab host (see docs/lab.md).
#
#   host_init.sh LAB_DIR NAME DROP_CAPS
#
# machineroom.lab starts it in fresh mount, uts, ipc and pid namespaces
# (`unshare --mount --uts --ipc --pid --fork --kill-child`). Python has already
# written what the host needs into LAB_DIR: the shared upper-layer seed
# (layer/), /dev and /run templates (runtime/) and this host's own files
# (hosts/NAME/layer/: host key, hostname, machine-id, sshd listen address).
# This script only mounts, switches root, starts sshd and stays PID 1.
#
# Nothing is mounted in the real machine's mount table: when this process dies
# the kernel kills the pid namespace and frees every mount and the tmpfs.
# Every command below is an exec; a host needs about ten, so many start fast.
set -eu
LAB=$1 NAME=$2 DROP_CAPS=$3
H=$LAB/hosts/$NAME
M=$H/mnt
R=$M/root

# Our own uts namespace: writing the still-mounted outer /proc names only this host.
echo "$NAME" >/proc/sys/kernel/hostname

# 1. The writable layer: a tmpfs only this mount namespace sees, filled from the
#    seed. cp -a keeps its trusted.overlay.opaque xattrs and whiteouts (char 0:0).
mount -t tmpfs -o mode=0700,size=2g "lab-$NAME" "$M"
cp -a "$LAB/layer/." "$H/layer/." "$M/"

# 2. The host's root: an overlay on the real / (copy-on-write: / is never written),
#    then kernel and runtime filesystems of its own, in this order.
#    (mount -T wants a regular file, not a pipe.)
cat >"$M/fstab" <<EOF
lab-$NAME   $R           overlay lowerdir=/,upperdir=$M/upper,workdir=$M/work 0 0
proc        $R/proc      proc    nosuid,nodev,noexec 0 0
$R/proc/sys $R/proc/sys  none    bind,ro 0 0
sysfs       $R/sys       sysfs   ro,nosuid,nodev,noexec 0 0
lab-dev     $R/dev       tmpfs   mode=0755,size=4m,nosuid 0 0
devpts      $R/dev/pts   devpts  X-mount.mkdir=0755,newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec 0 0
lab-shm     $R/dev/shm   tmpfs   X-mount.mkdir=1777,mode=1777,nosuid,nodev 0 0
lab-run     $R/run       tmpfs   mode=0755,size=64m,nosuid,nodev 0 0
lab-tmp     $R/tmp       tmpfs   mode=1777,nosuid,nodev 0 0
EOF
mount -a -T "$M/fstab"
# /dev nodes and /run dirs from a template: one cp instead of a mknod per node.
cp -a "$LAB/runtime/dev" "$LAB/runtime/run" "$R/"
# A root shell in a host must not be able to crash the real machine.
if [ -e "$R/proc/sysrq-trigger" ]; then mount --bind /dev/null "$R/proc/sysrq-trigger"; fi

# 3. Switch root. pivot_root(".", ".") stacks the old root on the new one; the lazy
#    unmount detaches it, so nothing of the real / stays reachable.
cd "$R"
pivot_root . .
umount -l .
cd /

# 4. sshd, not as PID 1, so that `service ssh restart` in a host works, logging to this
#    console (LAB_DIR/hosts/NAME/console.log). Every session inherits the reduced
#    capability bounding set. sshd writes its pid file once it listens; if it exits
#    first (say its address is taken), the console says why and the host dies.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
setpriv --bounding-set "$DROP_CAPS" -- /usr/sbin/sshd -D -e &
until [ -e /run/sshd.pid ]; do
    kill -0 $! 2>/dev/null || exit 1
    sleep 0.01
done
echo "lab: $NAME up"

# 5. Stay PID 1: the shell reaps adopted orphans while it waits. TERM, INT or HUP end
#    the host, SIGKILL from outside always does.
trap 'exit 0' TERM INT HUP
exec </dev/null
while :; do
    sleep 3600 &
    wait $! || :
done
