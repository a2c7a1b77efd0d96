#!/bin/busybox sh
# /init of the Linux guest baseline of `cargo xtask bench linux-sched`
# (xtask/src/bench/linux_guest.rs packs it into the initramfs next to busybox, cyclictest and
# pingpong). It runs the scheduler measurements, prints them as machine-parseable lines on
# the console (ttyS0) and powers off:
#
#   NOTE /init started                     (first line: xtask times the boot with it)
#   RESULT kernel <uname -r> <uname -v>    RESULT <key> <value>     NOTE <text>
#   BEGIN cyclictest period=<us> hog=<0|1> rc=<exit status>
#   <the histogram lines of `cyclictest -h` whose count is not zero, and its `#` summary>
#   END cyclictest
#   RESULT done
#
# Kernel command line parameters read here: rhea.loops=<N> (cyclictest loops and pingpong
# round trips, default 10000), rhea.hist=<us> (cyclictest histogram size, default 20000) and
# rhea.mode=xcpu (instead of the scheduler measures: xcpu_wake's same- and cross-CPU futex
# wake-ups, `RESULT xcpu_same ...` and `RESULT xcpu_cross ...`, for `cargo xtask bench smp`).
# rhea.mode=net (for `cargo xtask bench net`): loads the virtio-net modules packed under
# /lib/modules/net/ (in dependency order), gives eth0 the address rhea.net.ip=<A.B.C.D/N>,
# prints `RESULT net_up eth0 <address>` and runs netecho (UDP and TCP echo on port 7; it
# prints `RESULT netecho_ready port=7`) until it receives its quit datagram.
# rhea.mode=rtos (for `cargo xtask bench rtos --board qemu-x86_64|qemu-aarch64`): runs
# `rtos periods=<rhea.periods> period_ms=<rhea.period_ms>` (xtask/guest/rtos.c, as root: its
# threads get SCHED_FIFO) and prints its lines (`RESULT conditions`, `RESULT rtos ...`,
# `RESULT done`), then `RESULT rtos_exit <status>`; this script prints no `RESULT done` of
# its own in this mode. The arm64 guest's initramfs holds only busybox and rtos.

echo "NOTE /init started"
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mkdir -p /dev/shm
mount -t tmpfs tmpfs /dev/shm           # cyclictest keeps its statistics in shared memory
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

loops=10000
hist=20000
mode=sched
netip=
periods=5
period_ms=200
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        rhea.loops=*) loops="${arg#rhea.loops=}" ;;
        rhea.hist=*) hist="${arg#rhea.hist=}" ;;
        rhea.mode=*) mode="${arg#rhea.mode=}" ;;
        rhea.net.ip=*) netip="${arg#rhea.net.ip=}" ;;
        rhea.periods=*) periods="${arg#rhea.periods=}" ;;
        rhea.period_ms=*) period_ms="${arg#rhea.period_ms=}" ;;
    esac
done

# Measure only once the kernel runs on its final clocksource with high-resolution timers:
# at first it still uses tsc-early and the periodic tick, and cyclictest would then run
# without hrtimers ("WARN: High resolution timers not available").
tenths=0
while [ "$tenths" -lt 300 ]; do
    cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
    if [ "$cs" != tsc-early ] && grep -q 'hres_active.*: 1' /proc/timer_list; then
        break
    fi
    sleep 0.1
    tenths=$((tenths + 1))
done
if [ "$tenths" -ge 300 ]; then
    echo "NOTE clocksource still $cs or no high-resolution timers after 30 s; measuring anyway"
fi

echo "RESULT kernel $(uname -r) $(uname -v)"
echo "RESULT settle_wait_s $((tenths / 10)).$((tenths % 10))"
echo "RESULT nproc $(nproc)"
echo "RESULT preempt $(cat /sys/kernel/debug/sched/preempt 2>/dev/null || echo unknown)"
echo "RESULT uptime_at_init $(cut -d' ' -f1 /proc/uptime)"
# How this guest idles (a CPU that polls instead of halting wakes faster under QEMU).
echo "NOTE idle: cpuidle driver $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none), governor $(cat /sys/devices/system/cpu/cpuidle/current_governor_ro 2>/dev/null || echo none), states $(cat /sys/devices/system/cpu/cpu0/cpuidle/state*/name 2>/dev/null | tr '\n' ' '), monitor/mwait $(grep -c -w monitor /proc/cpuinfo), cmdline $(cat /proc/cmdline)"

# No RT throttling: a measurement must not be paused for 50 ms every second.
echo -1 > /proc/sys/kernel/sched_rt_runtime_us

if [ "$mode" = rtos ]; then
    echo "RESULT clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    /bin/rtos "periods=$periods" "period_ms=$period_ms"
    echo "RESULT rtos_exit $?"
    sync
    poweroff -f
fi

if [ "$mode" = xcpu ]; then
    /bin/xcpu_wake 0 0 "$loops" | sed -n 's/^RESULT wake /RESULT xcpu_same /p'
    /bin/xcpu_wake 0 1 "$loops" | sed -n 's/^RESULT wake /RESULT xcpu_cross /p'
    echo "RESULT done"
    sync
    poweroff -f
fi

if [ "$mode" = net ]; then
    for m in /lib/modules/net/*.ko; do
        insmod "$m" 2>&1 | sed 's/^/NOTE insmod: /'
    done
    tenths=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$tenths" -lt 100 ]; do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    ip link set lo up
    if [ -z "$netip" ] || ! ip addr add "$netip" dev eth0 || ! ip link set eth0 up; then
        echo "NOTE net: cannot configure eth0 with rhea.net.ip=$netip ($(ls /sys/class/net))"
        echo "RESULT done"
        sync
        poweroff -f
    fi
    echo "RESULT net_up eth0 $netip $(cat /sys/class/net/eth0/address)"
    /bin/netecho 7
    echo "RESULT netecho_exit $?"
    echo "RESULT done"
    sync
    poweroff -f
fi

/bin/pingpong "$loops"

for period in 200 1000; do
    for hog in 0 1; do
        hogpid=
        if [ "$hog" = 1 ]; then
            # The low-priority CPU hog: a busy loop at nice 19 on CPU 0 (busybox has
            # renice but no nice).
            taskset 1 sh -c 'renice -n 19 -p $$ > /dev/null; while :; do :; done' &
            hogpid=$!
            sleep 0.1
            echo "NOTE hog pid $hogpid nice $(cut -d' ' -f19 /proc/$hogpid/stat)"
        fi
        cyclictest -m -p 90 -a 0 -i "$period" -l "$loops" -h "$hist" -q \
            > /tmp/cyclictest.out 2> /tmp/cyclictest.err
        rc=$?
        if [ -n "$hogpid" ]; then
            kill "$hogpid"
            wait "$hogpid" 2>/dev/null
        fi
        echo "BEGIN cyclictest period=$period hog=$hog rc=$rc"
        grep -v ' 000000$' /tmp/cyclictest.out
        sed 's/^/NOTE cyclictest: /' /tmp/cyclictest.err
        echo "END cyclictest"
    done
done

echo "RESULT clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "RESULT uptime_at_end $(cut -d' ' -f1 /proc/uptime)"
echo "RESULT done"
sync
poweroff -f
