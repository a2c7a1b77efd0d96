#!/bin/busybox sh
# /init of the dom0 of `cargo xtask xen-dom0` (xtask/src/xen_dom0.rs packs it into the dom0
# initramfs). It starts Xen's toolstack, creates the domU of /etc/xen/domu.cfg, waits for the
# domU's ready line, runs the network checks against it, waits for the domU to end (or
# destroys it), prints the logs between markers and powers off. Every wait is bounded.
#
# The per-run settings come from /etc/rhea-dom0.conf (a second cpio archive appended by
# xtask): DOMU_IP, CHECKS (ping udp tcp http), READY (a fixed string, may be empty),
# READY_WAIT, END_WAIT (seconds).
#
# Lines for xtask (all start with DOM0-):
#   DOM0-UP uptime=<s>                    toolstack running
#   DOM0-CREATE ok=<0|1> domid=<n>        `xl create` returned
#   DOM0-READY ok=<0|1> after=<s> where=<console|xen|->
#   DOM0-VIF name=<vif> addr=<cidr>       dom0's side of the domU's interface
#   DOM0-CHECK name=<check> ok=<0|1> detail=<text>
# Checks: ping (busybox), udp and tcp (a line to port 7 comes back: nc.openbsd, as busybox's nc
# has neither UDP nor a half-close; not -q, with which nc.openbsd leaves before a UDP reply), http (busybox wget of /status.json on port 8080).
#   DOM0-STATE state=<xl flags> reason=<code|-> waited=<s> destroyed=<0|1>
#   DOM0-BEGIN <log> ... DOM0-END <log>  console, xl, hotplug, xl dmesg
#   DOM0-FINISHED
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run
mkdir -p /run/xen /run/xenstored /dev/pts /var/log/xen/console /tmp
mount -t devpts devpts /dev/pts          # xenconsoled needs ptys
up() { cut -d' ' -f1 /proc/uptime; }

DOMU_IP=10.0.0.2
CHECKS=
READY=
READY_WAIT=60
END_WAIT=30
. /etc/rhea-dom0.conf
echo "DOM0-INIT uptime=$(up)"

for m in /lib/modules/*.ko; do
    insmod "$m" 2>/tmp/insmod.err || echo "DOM0-NOTE insmod $m failed: $(cat /tmp/insmod.err)"
done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file=/run/xenstored.pid
/usr/lib/xen-4.17/bin/xen-init-dom0 >/tmp/init-dom0.log 2>&1 || { echo "DOM0-NOTE xen-init-dom0 failed"; cat /tmp/init-dom0.log; }
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
ip link set lo up
echo "DOM0-UP uptime=$(up) $(xl info | sed -n 's/^xen_version *: */xen=/p')"

finish() {
    echo "DOM0-BEGIN console"
    cat /var/log/xen/console/guest-domu.log 2>/dev/null
    echo "DOM0-END console"
    # Other consoles of the domU (arm64: the emulated PL011, `vuart`).
    for f in /var/log/xen/console/guest-domu?*.log; do
        [ -f "$f" ] || continue
        echo "DOM0-BEGIN vuart $f"
        cat "$f"
        echo "DOM0-END vuart"
    done
    echo "DOM0-BEGIN xl"
    tail -n 60 /var/log/xen/xl-domu.log 2>/dev/null
    echo "DOM0-END xl"
    echo "DOM0-BEGIN hotplug"
    cat /var/log/xen/vif-rhea.log 2>/dev/null
    echo "DOM0-END hotplug"
    echo "DOM0-FINISHED uptime=$(up)"
    sync
    poweroff -f
    sleep 30
}

t0=$(up)
if xl create /etc/xen/domu.cfg >/tmp/create.log 2>&1; then
    echo "DOM0-CREATE ok=1 domid=$(xl domid domu 2>/dev/null) uptime=$(up)"
else
    echo "DOM0-CREATE ok=0 uptime=$(up)"
    sed 's/^/DOM0-NOTE xl: /' /tmp/create.log
    finish
fi

# The domU's ready line: in its PV console log (xenconsoled) or, for early output (port 0xE9,
# console_io), in Xen's console ring.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
gone() { ! xl list domu >/dev/null 2>&1 || xl list domu | tail -n 1 | awk '{ exit !($5 ~ /[sc]/) }'; }
where=-
if [ -n "$READY" ]; then
    i=0
    while [ $i -lt $((READY_WAIT * 2)) ]; do
        if grep -qF -- "$READY" /var/log/xen/console/guest-domu.log 2>/dev/null; then where=console; break; fi
        if xl dmesg 2>/dev/null | grep -qF -- "$READY"; then where=xen; break; fi
        gone && break
        sleep 0.5
        i=$((i + 1))
    done
fi
if [ "$where" != - ] || [ -z "$READY" ]; then ok=1; else ok=0; fi
echo "DOM0-READY ok=$ok after=$(secs "$t0" "$(up)") where=$where"

vif=$(cat /run/vif-rhea.name 2>/dev/null)
[ -n "$vif" ] && echo "DOM0-VIF name=$vif addr=$(ip -4 -o addr show dev "$vif" 2>/dev/null | awk '{ print $4 }') state=$(cat /sys/class/net/"$vif"/operstate 2>/dev/null)"

check() {   # check NAME OK DETAIL
    echo "DOM0-CHECK name=$1 ok=$2 detail=$(echo "$3" | tr '\n' ' ' | cut -c1-200)"
}
for c in $CHECKS; do
    case "$c" in
    ping)
        out=$(timeout 10 ping -c 3 -W 2 "$DOMU_IP" 2>&1)
        if echo "$out" | grep -q ' 0% packet loss\| [12]% packet loss\|[1-9] packets received'; then ok=1; else ok=0; fi
        if echo "$out" | grep -q ' 100% packet loss'; then ok=0; fi
        check ping $ok "$(echo "$out" | grep -E 'packets|round-trip|bad|unreach' )" ;;
    udp)
        want="rhea-udp-$$"
        out=$(echo "$want" | timeout 8 nc.openbsd -u -w 3 "$DOMU_IP" 7 2>&1)
        if [ "$out" = "$want" ]; then ok=1; else ok=0; fi
        check udp $ok "sent=$want got=$out" ;;
    tcp)
        want="rhea-tcp-$$"
        out=$(echo "$want" | timeout 8 nc.openbsd -N -w 3 "$DOMU_IP" 7 2>&1)
        if [ "$out" = "$want" ]; then ok=1; else ok=0; fi
        check tcp $ok "sent=$want got=$out" ;;
    http)
        # (busybox 1.35's wget crashes with -T: `timeout` bounds it instead.)
        out=$(timeout 10 wget -q -O - "http://$DOMU_IP:8080/status.json" 2>&1)
        rc=$?
        if [ $rc -eq 0 ] && [ -n "$out" ]; then ok=1; else ok=0; fi
        check http $ok "rc=$rc body=$out" ;;
    *)
        check "$c" 0 "unknown check" ;;
    esac
done
echo "DOM0-CHECKS-DONE uptime=$(up)"

# How the domU ends: on_poweroff/on_crash/on_reboot are "preserve", so `xl list -v` still
# shows a domain that shut down, with its state flags and reason code.
t1=$(up)
i=0
while [ $i -lt $((END_WAIT * 2)) ]; do
    gone && break
    sleep 0.5
    i=$((i + 1))
done
line=$(xl list -v domu 2>/dev/null | tail -n 1)
if [ -z "$line" ]; then
    state=gone reason=-
else
    state=$(echo "$line" | awk '{ print $5 }')
    reason=$(echo "$line" | awk '{ print $8 }')
fi
destroyed=0
if [ -n "$line" ]; then
    xl destroy domu >/dev/null 2>&1 && destroyed=1
fi
echo "DOM0-STATE state=$state reason=$reason waited=$(secs "$t1" "$(up)") destroyed=$destroyed"
finish
