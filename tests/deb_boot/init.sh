#!/bin/busybox sh
# The initramfs's /init of tests/deb_boot.rs: loads the modules, mounts the root disk,
# copies the test's files into it, installs the package there with apt (a chroot: no
# systemd runs yet, as when an image is built), then starts systemd. What the install
# prints goes to the second serial port, where the steps' sections follow.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The firmware's escape codes can share the console's first line.
echo
for module in /modules/*.ko; do insmod "$module" || echo "init: insmod $module failed"; done
for _ in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /newroot || { echo "init: cannot mount /dev/vda"; exec poweroff -f; }
cp -a /overlay/. /newroot/
mount -t proc proc /newroot/proc
mount -o bind /dev /newroot/dev
# The root's file, not the initramfs's.
deb=/$(cd /newroot && echo srv/binfmt-test/binfmt_*_amd64.deb)
{
	printf '\n@@ install\n'
	chroot /newroot /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive \
		apt-get -q -o Dpkg::Use-Pty=0 install -y "$deb" 2>&1
	printf 'exit %s\n' "$?"
} >/dev/ttyS1
umount /newroot/dev /newroot/proc
umount /sys /proc /dev
exec switch_root /newroot /sbin/init
