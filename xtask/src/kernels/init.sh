#!/bin/busybox sh
# /init of every guest `cargo xtask kernels` boots (xtask/src/kernels.rs): pid 1 on one
# of Debian's own kernels, where the release binary for that host (/usr/bin/binfmt)
# is run as a user would, on the host and from a container, and checked by running
# programs of every architecture. /test/config (written by xtask) says what to
# expect; nothing here assumes a kernel version.
#
# What it prints on the console, each on a line of its own (the firmware's escape
# codes can precede the first one), is all xtask reads:
#   binfmt-kernel-test: <step> ok [what was seen]
#   binfmt-kernel-test: <step> FAIL <why>
#   binfmt-kernel-test: fact <name>=<value>
#   binfmt-kernel-test: done
# Every step reports exactly once, in this order; xtask fails a step that never
# reports. No `set -e`: every failure is reported, then the next step runs.

/bin/busybox mkdir -p /bin /proc /sys /dev /tmp /var/lib
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp

. /test/config

BINFMT=/usr/bin/binfmt
MNT=/proc/sys/fs/binfmt_misc
OUT=/tmp/out
ERR=/tmp/err
# An entry of another tool (type E, an extension no file has): what binfmt must
# leave alone.
OTHER=binfmt-kernel-test-other

say() { printf '\nbinfmt-kernel-test: %s\n' "$*"; }
ok() { say "$1 ok${2:+ $2}"; }
fail() { say "$1 FAIL $2"; }
fact() { say "fact $1=$2"; }
finish() {
    say done
    sync
    poweroff -f
}
# Seconds since boot, to the hundredth.
now() { cut -d' ' -f1 /proc/uptime; }
# Seconds from $1 to now.
since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.2f", end - start }'; }
# The first 300 bytes of a file, on one line.
excerpt() { head -c 300 "$1" | tr '\n' ' '; }

# The qemu-* entries of the table at $MNT, sorted, space-separated.
qemu_entries() {
    ls "$MNT" 2>/dev/null | grep '^qemu-' | sort | tr '\n' ' ' | sed 's/ $//'
}
# Every entry of the table with its contents, and whether it is enabled.
table() {
    cat "$MNT/status"
    for entry in $(ls "$MNT" | grep -v -x -e register -e status | sort); do
        echo "== $entry"
        cat "$MNT/$entry"
    done
}
# The table and the emulator files (inode, mtime, size): what a rerun must not change.
state() {
    table
    stat -c '%i %Y %s %n' /var/lib/binfmt/* 2>/dev/null
}
mounted() { grep -q " $MNT binfmt_misc " /proc/mounts; }
clear_table() {
    echo -1 >"$MNT/status"
    umount "$MNT"
}

# Runs the probe of cpu $1 as the command after it: ok when it printed its message
# and exited with its status.
probe_runs() {
    cpu=$1
    shift
    "$@" >"$OUT" 2>"$ERR"
    status=$?
    [ "$status" = "$PROBE_STATUS" ] && [ "$(cat "$OUT")" = "binfmt-kernel-test probe $cpu" ]
}
# Runs busybox $1 (a path) as a shell that prints `uname -m` and hashes a line
# through a pipe (fork, exec of the busybox itself, pipes, all emulated); ok when it
# prints $2 and the right digest.
busybox_runs() {
    "$1" sh -c 'uname -m; echo binfmt-kernel-test | sha256sum' >"$OUT" 2>"$ERR" &&
        [ "$(cat "$OUT")" = "$2
618d0595c9955c9ebaddee0f2a2019ab662dac73b5c2b4a2079185507b68837b  -" ]
}
# The fields of an entry of $BUSYBOXES, `<debian arch>:<qemu cpu>:<uname -m under
# QEMU>`, into $arch, $cpu and $machine, with $want what `uname -m` must print: the
# host's when the CPU runs it natively, QEMU's name of the architecture when emulated.
busybox_fields() {
    arch=${1%%:*}
    rest=${1#*:}
    cpu=${rest%%:*}
    machine=${rest#*:}
    case " $NATIVE_CPUS " in
    *" $cpu "*) want=$(uname -m) ;;
    *) want=$machine ;;
    esac
}
# The first cpu of $CPUS that is emulated here.
first_emulated() {
    for cpu in $CPUS; do
        case " $NATIVE_CPUS " in *" $cpu "*) ;; *) echo "$cpu"; return ;; esac
    done
}

step_boot() {
    ok boot "$(uname -r) $(uname -m)"
    fact page_size "$(awk '/^KernelPageSize:/ { print $2 $3; exit }' /proc/self/smaps)"
}

step_module() {
    if ! insmod /lib/modules/binfmt_misc.ko 2>"$ERR"; then
        fail module "insmod: $(excerpt "$ERR")"
        finish
    fi
    if ! grep -qw binfmt_misc /proc/filesystems; then
        fail module "loaded, but /proc/filesystems has no binfmt_misc"
        finish
    fi
    ok module
}

# Before anything is registered: exactly the expected architectures run natively.
step_native() {
    native=
    for cpu in $CPUS; do
        probe_runs "$cpu" "/test/probes/$cpu" && native="$native $cpu"
    done
    native=${native# }
    fact native "$native"
    if [ "$native" = "$NATIVE_CPUS" ]; then
        ok native "$native"
    else
        fail native "ran natively: '$native', expected '$NATIVE_CPUS'"
    fi
}

# The kernel's own behaviour, without binfmt: does an entry registered in a fresh
# mount namespace outlive the last unmount of its instance?
step_survival() {
    marker=binfmt-kernel-test-marker
    if ! unshare -m sh -c "mount -t binfmt_misc binfmt_misc $MNT &&
        echo ':$marker:E::$marker::/$marker:' >$MNT/register &&
        test -f $MNT/$marker" 2>"$ERR"; then
        fail survival "could not register a marker in a new mount namespace: $(excerpt "$ERR")"
        return
    fi
    if ! mount -t binfmt_misc binfmt_misc "$MNT" 2>"$ERR"; then
        fail survival "mount: $(excerpt "$ERR")"
        return
    fi
    if [ -e "$MNT/$marker" ]; then
        outlives=yes
        echo -1 >"$MNT/$marker"
    else
        outlives=no
    fi
    umount "$MNT"
    fact entries_outlive_last_unmount "$outlives"
    ok survival "$outlives"
}

# A container (mount and pid namespace of its own, /proc of its own) while nothing is
# mounted on the host: binfmt either registers entries that stay after it exits, or
# refuses with the fix. Success followed by loss fails.
step_container_unmounted() {
    unshare -m -p -f --mount-proc "$BINFMT" --install all >"$OUT" 2>"$ERR"
    status=$?
    mount -t binfmt_misc binfmt_misc "$MNT"
    after=$(qemu_entries)
    if [ "$status" = 0 ]; then
        if [ "$after" = "$EXPECTED_ENTRIES" ] && probe_runs "$(first_emulated)" "/test/probes/$(first_emulated)"; then
            fact container_without_host_mount kept
            ok container-unmounted "kept: $after"
        else
            fail container-unmounted "exit 0, but after the container the host has '$after', expected '$EXPECTED_ENTRIES' (and a program of the first to run)"
        fi
    elif [ -z "$after" ] && grep -qi 'fix: mount binfmt_misc on the host' "$ERR"; then
        fact container_without_host_mount refused
        ok container-unmounted "refused with the fix"
    else
        fail container-unmounted "exit $status, host has '$after' after it; stderr: $(excerpt "$ERR")"
    fi
    clear_table
}

# The same container once the host has binfmt_misc mounted: it registers into the
# host's instance, and the entries stay and work after it exits.
step_container_mounted() {
    mount -t binfmt_misc binfmt_misc "$MNT"
    unshare -m -p -f --mount-proc "$BINFMT" --install all >"$OUT" 2>"$ERR"
    status=$?
    after=$(qemu_entries)
    if [ "$status" = 0 ] && [ "$after" = "$EXPECTED_ENTRIES" ] && probe_runs "$(first_emulated)" "/test/probes/$(first_emulated)"; then
        ok container-mounted "$after"
    else
        fail container-mounted "exit $status, host has '$after', expected '$EXPECTED_ENTRIES'; stderr: $(excerpt "$ERR")"
    fi
    clear_table
}

# On the host with nothing mounted: binfmt mounts binfmt_misc itself, and the mount
# and the entries stay.
step_host_mount() {
    "$BINFMT" --install all >"$OUT" 2>"$ERR"
    status=$?
    after=$(qemu_entries)
    if [ "$status" = 0 ] && mounted && [ "$after" = "$EXPECTED_ENTRIES" ]; then
        ok host-mount "$after"
    else
        fail host-mount "exit $status, mounted: $(mounted && echo yes || echo no), entries '$after', expected '$EXPECTED_ENTRIES'; stderr: $(excerpt "$ERR")"
    fi
    mounted || mount -t binfmt_misc binfmt_misc "$MNT"
    echo -1 >"$MNT/status"
}

# With another tool's entry in the table: `--install all` registers the host's set
# and leaves the other entry as it is.
step_install() {
    echo ":$OTHER:E::$OTHER::/bin/busybox:F" >"$MNT/register"
    table >/tmp/table-before
    other_before=$(cat "$MNT/$OTHER")
    "$BINFMT" --install all >"$OUT" 2>"$ERR"
    status=$?
    after=$(qemu_entries)
    if [ "$status" = 0 ] && [ "$after" = "$EXPECTED_ENTRIES" ] && [ "$(cat "$MNT/$OTHER")" = "$other_before" ]; then
        ok install "$after"
    else
        fail install "exit $status, entries '$after', expected '$EXPECTED_ENTRIES'; stderr: $(excerpt "$ERR")"
    fi
}

# Every architecture's programs run: the tiny-elf probes of all of them and the
# busyboxes, natively or through the entries.
step_foreign() {
    failed=
    times=
    for cpu in $CPUS; do
        start=$(now)
        if probe_runs "$cpu" "/test/probes/$cpu"; then
            times="$times $cpu:$(since "$start")"
        else
            failed="$failed probe $cpu (exit $status: $(excerpt "$ERR"));"
        fi
    done
    for busybox in $BUSYBOXES; do
        busybox_fields "$busybox"
        start=$(now)
        if busybox_runs "/test/busybox/$arch/busybox" "$want"; then
            times="$times busybox-$arch:$(since "$start")"
        else
            failed="$failed busybox $arch (printed '$(excerpt "$OUT")', want '$want': $(excerpt "$ERR"));"
        fi
    done
    fact foreign_seconds "${times# }"
    if [ -z "$failed" ]; then
        ok foreign "$(echo $CPUS | wc -w) probes, busybox $(for b in $BUSYBOXES; do printf '%s ' "${b%%:*}"; done)"
    else
        fail foreign "$failed"
    fi
}

# The same from an empty root: a directory holding only the program, so that only
# an entry with flag F can serve it.
step_empty_root() {
    failed=
    ran=
    for cpu in $CPUS; do
        case " $NATIVE_CPUS " in *" $cpu "*) continue ;; esac
        root=/tmp/empty-$cpu
        mkdir -p "$root"
        cp "/test/probes/$cpu" "$root/$cpu"
        if probe_runs "$cpu" chroot "$root" "/$cpu"; then
            ran="$ran $cpu"
        else
            failed="$failed probe $cpu (exit $status: $(excerpt "$ERR"));"
        fi
    done
    for busybox in $BUSYBOXES; do
        busybox_fields "$busybox"
        case " $NATIVE_CPUS " in *" $cpu "*) continue ;; esac
        root=/tmp/empty-busybox-$arch
        mkdir -p "$root"
        cp "/test/busybox/$arch/busybox" "$root/busybox"
        if chroot "$root" /busybox uname -m >"$OUT" 2>"$ERR" && [ "$(cat "$OUT")" = "$want" ]; then
            ran="$ran busybox-$arch"
        else
            failed="$failed busybox $arch ('$(excerpt "$OUT")': $(excerpt "$ERR"));"
        fi
    done
    if [ -z "$failed" ]; then ok empty-root "${ran# }"; else fail empty-root "$failed"; fi
}

step_check() {
    if "$BINFMT" check $PLATFORMS >"$OUT" 2>"$ERR"; then
        ok check "$(grep -c '^ok' "$OUT") of $(echo $PLATFORMS | wc -w) platforms ok"
    else
        fail check "exit $?: $(excerpt "$OUT") $(excerpt "$ERR")"
    fi
}

step_doctor() {
    if "$BINFMT" doctor >"$OUT" 2>"$ERR"; then
        ok doctor "$(tail -n 1 "$OUT")"
    else
        fail doctor "exit $?: $(excerpt "$OUT") $(excerpt "$ERR")"
    fi
}

# Again: nothing is written (no register line in the debug log, the same table and
# the same emulator files).
step_rerun() {
    state >/tmp/state-before
    BINFMT_LOG=debug "$BINFMT" --install all >"$OUT" 2>"$ERR"
    status=$?
    state >/tmp/state-after
    writes=$(grep -c 'writing .* bytes to' "$ERR")
    if [ "$status" = 0 ] && [ "$writes" = 0 ] && cmp -s /tmp/state-before /tmp/state-after; then
        ok rerun
    else
        fail rerun "exit $status, $writes registrations written, table or files changed: $(diff /tmp/state-before /tmp/state-after | head -c 300 | tr '\n' ' ')"
    fi
}

# `--uninstall` leaves the table as it was before `--install`.
step_uninstall() {
    "$BINFMT" --uninstall 'qemu-*' >"$OUT" 2>"$ERR"
    status=$?
    table >/tmp/table-after
    if [ "$status" = 0 ] && cmp -s /tmp/table-before /tmp/table-after; then
        ok uninstall
    else
        fail uninstall "exit $status; the table differs from before --install: $(diff /tmp/table-before /tmp/table-after | head -c 300 | tr '\n' ' ')"
    fi
    echo -1 >"$MNT/$OTHER"
}

# Rootless, as nobody: works on kernels with binfmt_misc per user namespace, refuses
# with its reason where there is none.
step_run() {
    cpu=$(first_emulated)
    su -s /bin/sh -c "exec $BINFMT run -- /test/probes/$cpu" nobody >"$OUT" 2>"$ERR"
    status=$?
    if [ "$RUN_EXPECTED" = works ]; then
        if [ "$status" = "$PROBE_STATUS" ] && [ "$(cat "$OUT")" = "binfmt-kernel-test probe $cpu" ]; then
            fact binfmt_run works
            ok run "works"
        else
            fail run "exit $status, stdout '$(excerpt "$OUT")': $(excerpt "$ERR")"
        fi
    elif [ "$status" = 125 ] && grep -q 'older than 6.7' "$ERR"; then
        fact binfmt_run refused
        ok run "refused: $(excerpt "$ERR")"
    else
        fail run "expected a refusal (125, older than 6.7), got exit $status: $(excerpt "$ERR")"
    fi
}

step_boot
step_module
step_native
step_survival
step_container_unmounted
step_container_mounted
step_host_mount
step_install
step_foreign
step_empty_root
step_check
step_doctor
step_rerun
step_uninstall
step_run
finish
