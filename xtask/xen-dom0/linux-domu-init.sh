#!/bin/busybox sh
# /init of the Linux domU that `cargo xtask xen-dom0 --kernel linux` boots to validate the
# harness (xtask/src/xen_dom0.rs): Debian's kernel with xen-netfront, eth0 given the address
# rhea.net.ip=A.B.C.D/N, and busybox servers for the dom0's checks: UDP and TCP echo on port
# 7, HTTP on 8080 serving /status.json. It prints `linux-domu: ready` and powers off after
# rhea.linger=<s> seconds (default 30; xtask gives 8).
/bin/busybox --install -s /bin
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip=
linger=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    rhea.net.ip=*) ip="${arg#rhea.net.ip=}" ;;
    rhea.linger=*) linger="${arg#rhea.linger=}" ;;
    esac
done
echo "linux-domu: init uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in /lib/modules/*.ko; do insmod "$m"; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
ip link set lo up
if [ -n "$ip" ]; then
    ip link set eth0 up && ip addr add "$ip" dev eth0
fi
ip -4 -o addr show dev eth0
mkdir -p /www
echo '{"status":"ok","guest":"linux-domu"}' > /www/status.json
# TCP echo: busybox nc, a persistent server running cat per connection. UDP echo: nc.openbsd
# answers the first peer; what it receives goes through the fifo back into its input.
nc -ll -p 7 -e cat &
mkfifo /tmp/udp
nc.openbsd -u -l 7 < /tmp/udp | cat > /tmp/udp &
httpd -p 8080 -h /www
sleep 0.5
echo "linux-domu: ready"
sleep "$linger"
echo "linux-domu: powering off"
poweroff -f
