#!/bin/sh
# ceph.sh - a throw-away single-node Ceph radosgw for the remote tests: one
# monitor, one BlueStore OSD on a sparse file, no manager, auth none, every
# socket on 127.0.0.1, all state in one folder, daemons stopped by pid.
#
#   sh tests/remote/ceph.sh start DIR   starts it; prints shell assignments
#                                       (S3_URL, S3_ACCESS, S3_SECRET, S3_BUCKET)
#   sh tests/remote/ceph.sh stop DIR    stops the daemons started in DIR
#
# Exits non-zero with one line on stderr if it cannot start (no packages:
# the remote tests then fail, they never skip). Start-up takes ~7 s.
set -u
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: ceph.sh start|stop DIR" >&2; exit 2; }

# A zombie daemon (its parent gone, reaped late by this machine's init)
# still answers kill -0: count a process alive only if it is not one.
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" | cut -c1)
    [ "$state" != Z ] && [ "$state" != X ]
}

stop() {
    for name in rgw osd mon; do
        f=$dir/$name.pid
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        alive "$pid" && kill "$pid" 2>/dev/null
        i=0
        while alive "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        alive "$pid" && kill -9 "$pid" 2>/dev/null
        rm -f "$f"
    done
}

die() {
    echo "ceph.sh: $*" >&2
    stop
    exit 1
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: ceph.sh start|stop DIR" >&2; exit 2; }

for p in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
    command -v $p >/dev/null 2>&1 || die "'$p' not found; install the packages with: sh tests/deps.sh"
done

mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd" "$dir/rgw" || die "cannot create '$dir'"
dir=$(cd "$dir" && pwd)

# Three free ports on 127.0.0.1 (a tiny race with other programs is accepted).
ports=$(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))') || die "cannot find free ports"
set -- $ports
mon_port=$1
rgw_port=$2
fsid=$(cat /proc/sys/kernel/random/uuid)
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
conf=$dir/ceph.conf

cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file =
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
keyring = /dev/null
paxos propose interval = 0.05
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 8589934592
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 536870912
osd max object name len = 460
osd max object namespace len = 64
mon osd full ratio = 0.99
mon osd nearfull ratio = 0.98
mon osd backfillfull ratio = 0.985
osd data size = 0
debug ms = 0
log to stderr = false
err to stderr = true
log to syslog = false

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw enable usage log = false
rgw dns name = 127.0.0.1
rgw thread pool size = 32
EOF

monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null 2>"$dir/log/setup.err" ||
    die "monmaptool failed: $(tail -n 1 "$dir/log/setup.err")"
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >>"$dir/log/setup.err" 2>&1 ||
    die "ceph-mon --mkfs failed: $(tail -n 1 "$dir/log/setup.err")"
ceph-mon -c "$conf" -i a -f >>"$dir/log/mon.out" 2>&1 &
echo $! >"$dir/mon.pid"

# A monitor starting on a loaded machine (make test runs other tests beside
# this one) can take longer than one client's patience: up to three tries.
# osd new with the same uuid is idempotent, so a try whose answer was lost
# costs nothing.
C() { timeout 60 ceph -c "$conf" --connect-timeout 45 "$@"; }
tries=0
until osd_id=$(C osd new "$osd_uuid" 2>>"$dir/log/setup.err"); do
    tries=$((tries + 1))
    alive "$(cat "$dir/mon.pid")" || die "ceph-mon exited: $(tail -n 2 "$dir/log/mon.out" "$dir/log/setup.err" 2>/dev/null | tr '\n' ' ')"
    [ $tries -lt 3 ] || die "monitor did not answer: $(tail -n 1 "$dir/log/setup.err")"
done
mkdir -p "$dir/osd/osd.$osd_id"
ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/setup.err" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -n 1 "$dir/log/setup.err")"
ceph-osd -c "$conf" -i "$osd_id" -f >>"$dir/log/osd.out" 2>&1 &
echo $! >"$dir/osd.pid"

radosgw -c "$conf" -n client.rgw -f >>"$dir/log/rgw.out" 2>&1 &
echo $! >"$dir/rgw.pid"

access=WDTESTACCESSKEY00001
secret=wdtestsecretkey0000000000000000000000001
radosgw-admin -c "$conf" user create --uid=wdtest --display-name=wdtest \
    --access-key=$access --secret-key=$secret >/dev/null 2>>"$dir/log/setup.err" ||
    die "radosgw-admin user create failed: $(tail -n 1 "$dir/log/setup.err")"

# The gateway answers once its pools exist: make the bucket through it.
bucket=wdtest
empty=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
i=0
while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access:$secret" \
        -H "x-amz-content-sha256: $empty" -X PUT "http://127.0.0.1:$rgw_port/$bucket")
    [ "$code" = 200 ] && break
    alive "$(cat "$dir/rgw.pid")" || die "radosgw exited: $(tail -n 2 "$dir/log/client.rgw.log" "$dir/log/rgw.out" 2>/dev/null | tr '\n' ' ')"
    i=$((i + 1))
    [ $i -lt 600 ] || die "radosgw did not answer within 60 s (last status $code)"
    sleep 0.1
done
echo "S3_URL=http://127.0.0.1:$rgw_port/$bucket"
echo "S3_ENDPOINT=http://127.0.0.1:$rgw_port"
echo "S3_BUCKET=$bucket"
echo "S3_ACCESS=$access"
echo "S3_SECRET=$secret"
