#!/bin/sh
# The steps of tests/deb_boot.rs, run by binfmt-test.service once the boot is done.
exec >>/dev/ttyS1 2>&1
export DEBIAN_FRONTEND=noninteractive
# The serial port is a terminal: no pager (util-linux's more would wait for a key),
# no colours, no progress bars.
export SYSTEMD_PAGER=cat SYSTEMD_COLORS=0
dir=/srv/binfmt-test

section() { printf '\n@@ %s\n' "$1"; }
# $1 the checkpoint; each entry's name and what the kernel says of it.
entries() {
	section "$1 entries"
	for entry in /proc/sys/fs/binfmt_misc/*; do
		case "${entry##*/}" in register | status) continue ;; esac
		printf '== %s\n' "${entry##*/}"
		cat "$entry"
	done
}
programs() {
	section "$1 programs"
	for program in "$dir"/programs/*; do
		printf '== %s\n' "${program##*/}"
		"$program" 2>&1
		printf 'exit %s\n' "$?"
	done
}
unit() {
	section "$1 $2"
	systemctl show "$2" -p ActiveState -p SubState -p Result -p ExecMainStatus \
		-p InvocationID -p UnitFileState -p ExecMainStartTimestampMonotonic \
		-p ExecMainExitTimestampMonotonic
}
# binfmt.service's last run, once journald has its last line (the status JSON's).
journal() {
	section "$1 journal"
	id=$(systemctl show binfmt.service -p InvocationID --value)
	[ -n "$id" ] || return 0
	for _ in $(seq 50); do
		log=$(journalctl "_SYSTEMD_INVOCATION_ID=$id" -o cat --no-pager)
		case "$log" in *"
}") break ;; esac
		sleep 0.2
	done
	printf '%s\n' "$log"
}
files() {
	section "$1 files"
	for path in /usr/bin/binfmt /etc/binfmt/config.toml /etc/binfmt /var/lib/binfmt \
		/usr/lib/systemd/system/binfmt.service \
		/etc/systemd/system/multi-user.target.wants/binfmt.service \
		/etc/systemd/system/systemd-binfmt.service.wants/binfmt.service; do
		if [ -e "$path" ] || [ -L "$path" ]; then echo "present $path"; else echo "absent $path"; fi
	done
	section "$1 dpkg"
	dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' binfmt 2>&1
	section "$1 emulator files"
	ls /var/lib/binfmt 2>&1
}
snapshot() {
	section "$1 clock"
	cut -d' ' -f1 /proc/uptime
	entries "$1"
	programs "$1"
	unit "$1" binfmt.service
	unit "$1" systemd-binfmt.service
	journal "$1"
	files "$1"
}
run() {
	section "$1"
	shift
	"$@" 2>&1
	printf 'exit %s\n' "$?"
}

section "boot time"
systemd-analyze 2>&1
systemd-analyze blame 2>&1 | head -n 8
snapshot boot
unit boot proc-sys-fs-binfmt_misc.mount
previous=$(systemctl show binfmt.service -p InvocationID --value)
run restart systemctl restart systemd-binfmt.service
# binfmt.service is restarted with it (PartOf=), after it (After=).
for _ in $(seq 300); do
	now=$(systemctl show binfmt.service -p InvocationID --value)
	state=$(systemctl show binfmt.service -p ActiveState --value)
	[ "$now" != "$previous" ] && [ "$state" = active ] && break
	sleep 0.2
done
snapshot restarted
run remove apt-get -q -o Dpkg::Use-Pty=0 remove -y binfmt
snapshot removed
run purge apt-get -q -o Dpkg::Use-Pty=0 purge -y binfmt
snapshot purged
run reinstall apt-get -q -o Dpkg::Use-Pty=0 install -y "$dir"/binfmt_*_amd64.deb
snapshot reinstalled
section status
binfmt 2>/dev/null
printf 'exit %s\n' "$?"
section "end clock"
cut -d' ' -f1 /proc/uptime
section end
