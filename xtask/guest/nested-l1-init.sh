#!/bin/busybox sh
# /init of the nested-KVM L1 of `cargo xtask test --accel nested-kvm` (xtask/src/nested/
# packs it into the initramfs next to busybox and the kernel modules). The L1 is a Debian
# Linux that QEMU runs under TCG with an emulated CPU that has hardware virtualisation; this
# script loads KVM, mounts the 9p shares and runs each job's QEMU (an L2: Rhea under this
# KVM) one after another, then powers off.
#
#   /modules/NN-<name>.ko   loaded in the order their names sort (xtask numbers them)
#   /usr                    read-only (tag hostusr): the host's /usr (x86_64: the host's own
#                           QEMU, its libraries, firmware), or (arm64) Debian's arm64 QEMU and
#                           its libraries unpacked by xtask; /lib and /lib64 lead into /usr
#   /job                    read-only (tag job): `list`, `jobs/<id>/{args,timeout,stdin,
#                           stdin-after}`, `images/`
#   /results                read-write (tag results): `<id>/{console,stderr,status}`, and
#                           `<id>/console.partial` while the L2 runs
#
# The file formats and the console lines below (each starting with "NESTED-L1 ") are
# xtask/src/nested/jobs.rs's; keep the two in step.

M="NESTED-L1"
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr /job /results
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
echo "$M init"

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# Ends the L1 after a setup failure: one line saying why, then power off.
give_up() {
    echo "$M $1"
    sync
    poweroff -f
}

n=0
for ko in /modules/*.ko; do
    [ -e "$ko" ] || continue
    insmod "$ko" || echo "$M note insmod $ko failed"
    n=$((n + 1))
done
echo "$M modules $n"

if [ ! -c /dev/kvm ]; then
    flags=$(grep -o -w -E 'svm|vmx' /proc/cpuinfo | head -n 1)
    said=$(dmesg | grep -i -E 'kvm|svm|EL2' | tail -n 4 | tr '\n' ';')
    give_up "no-kvm /dev/kvm missing in the L1 ($(uname -m); x86 CPU flag: ${flags:-none}); dmesg: ${said:-nothing about kvm}"
fi

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,cache=loose,ro" hostusr /usr || give_up "fail cannot mount the host's /usr (9p tag hostusr)"
mount -t 9p -o "$opts,ro" job /job || give_up "fail cannot mount the job share (9p tag job)"
mount -t 9p -o "$opts" results /results || give_up "fail cannot mount the results share (9p tag results)"
[ -f /job/list ] || give_up "fail /job/list missing"
# A NIC when an L2 serves the host (xtask forwards host ports to this address's 8080 and 7007,
# where the L2's QEMU forwards them on): QEMU's user network 10.0.3.0/24 (xtask's L1_NET and
# L1_ADDR), static.
if [ -e /sys/class/net/eth0 ]; then
    ip link set lo up
    ip link set eth0 up
    ip addr add 10.0.3.15/24 dev eth0 || give_up "fail cannot address eth0"
    ip route add default via 10.0.3.2
    echo "$M net eth0 10.0.3.15"
fi
# The L1 has no ld.so.cache: the host's multiarch library directories, searched explicitly.
LD_LIBRARY_PATH=$(ls -d /usr/lib/*-linux-gnu 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH%:}"
echo "$M ready $(uptime_s)"

for id in $(cat /job/list); do
    d=/job/jobs/$id
    out=/results/$id
    mkdir -p "$out"
    set --
    while IFS= read -r a; do
        set -- "$@" "$a"
    done < "$d/args"
    t=$(cat "$d/timeout")
    echo "$M start $id"
    if [ -f "$d/interactive" ]; then
        # `cargo xtask run --accel nested-kvm`: the L2 on this console (the terminal), until
        # its user quits it; nothing captured.
        start=$(uptime_s)
        "$@"
        rc=$?
        end=$(uptime_s)
        : > "$out/console"
        : > "$out/stderr"
        printf 'rc=%s\nstart=%s\nend=%s\n' "$rc" "$start" "$end" > "$out/status"
        echo "$M end $id rc=$rc secs=$(awk "BEGIN { printf \"%.2f\", $end - $start }")"
        continue
    fi
    rm -f /tmp/console /tmp/stderr /tmp/stdin-at /tmp/l2-stdin
    : > /tmp/console
    feeder=
    # The console so far, copied to the share every second: what xtask shows of an L2 whose
    # L1 never finished it.
    ( while sleep 1; do cp /tmp/console "$out/console.partial"; done ) &
    copier=$!
    if [ -f "$d/stdin" ]; then
        # The L2's serial input: a FIFO this shell holds open read-write (so opening it
        # does not block and QEMU sees no end of file), written once the console holds
        # the marker (or at once).
        mkfifo /tmp/l2-stdin
        exec 3<>/tmp/l2-stdin
        (
            if [ -f "$d/stdin-after" ]; then
                marker=$(cat "$d/stdin-after")
                until grep -q -F -- "$marker" /tmp/console; do sleep 0.05; done
            fi
            uptime_s > /tmp/stdin-at
            cat "$d/stdin" >&3
        ) &
        feeder=$!
        start=$(uptime_s)
        timeout -s KILL "$t" "$@" < /tmp/l2-stdin > /tmp/console 2> /tmp/stderr
        rc=$?
    else
        start=$(uptime_s)
        timeout -s KILL "$t" "$@" < /dev/null > /tmp/console 2> /tmp/stderr
        rc=$?
    fi
    end=$(uptime_s)
    kill "$copier" 2>/dev/null
    wait "$copier" 2>/dev/null
    rm -f "$out/console.partial"
    if [ -n "$feeder" ]; then
        kill "$feeder" 2>/dev/null
        wait "$feeder" 2>/dev/null
        exec 3>&-
    fi
    cp /tmp/console "$out/console"
    cp /tmp/stderr "$out/stderr"
    {
        echo "rc=$rc"
        echo "start=$start"
        echo "end=$end"
        [ -f /tmp/stdin-at ] && echo "stdin-at=$(cat /tmp/stdin-at)"
    } > "$out/status"
    echo "$M end $id rc=$rc secs=$(awk "BEGIN { printf \"%.2f\", $end - $start }")"
done

echo "$M done"
sync
poweroff -f
