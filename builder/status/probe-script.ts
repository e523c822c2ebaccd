/**
 * The probe `pibake status` runs on each node, as text: a module rather than a .sh file beside
 * probe.ts so that the compiled package (dist/, JavaScript only) carries it. probe.ts puts the
 * node's settings in front; the tests run it with sh (and `sh -n`).
 */
export const PROBE_SCRIPT = String.raw`# The probe 'pibake status' runs on each node: one ssh session ('sh -s' as the cluster's admin
# user), read-only, every slow step bounded by 'timeout'. builder/status/probe.ts writes the
# node's settings in front of this text (UNITS, PG_PORT, PATRONI_URL, ETCD_URL, HAPROXY,
# CLOUD_INIT_DONE_IN), taken from what the node's role declares. builder/status/parse.ts reads
# the sections printed here:
#   @@pibake-status begin NAME
#   ...what the step printed, stdout and stderr...
#   @@pibake-status end NAME EXIT-CODE
# Two reads need more than the admin user's own rights: PostgreSQL as its postgres user (peer
# authentication on the local socket) and HAProxy's admin socket (group haproxy). They use
# sudo -n, which the admin user of a pibake card has without a password; without it they report
# sudo's refusal instead of waiting for a password. This runs on the node, never on the
# operator's machine.
set -f
LC_ALL=C
export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# psql run as postgres warns when it cannot enter the admin user's home.
cd / || exit 1

section() {
  _name=$1
  shift
  echo "@@pibake-status begin $_name"
  "$@" 2>&1
  _rc=$?
  # A step's output need not end with a newline; the parser drops this one.
  printf '\n@@pibake-status end %s %s\n' "$_name" "$_rc"
}

host() {
  hostname && cat /proc/uptime /proc/sys/kernel/random/boot_id
}

cloud_init() {
  command -v cloud-init >/dev/null 2>&1 || { echo 'cloud-init is not installed'; return 127; }
  # --watch: an earlier round found cloud-init done in this very boot, and that does not change
  # until the next one; spare the node cloud-init's Python start-up (seconds on a Pi).
  if [ -n "$CLOUD_INIT_DONE_IN" ] && [ "$CLOUD_INIT_DONE_IN" = "$(cat /proc/sys/kernel/random/boot_id)" ]; then
    echo 'done earlier in this boot'
    return 0
  fi
  timeout 20 cloud-init status --format json
}

# One query whatever the node is (primary or standby), answered as one JSON line.
postgresql() {
  timeout 10 sudo -n -u postgres psql -X -A -t -q -v ON_ERROR_STOP=1 \
    -d "port=$PG_PORT dbname=postgres connect_timeout=4 application_name=pibake-status" <<'SQL'
SELECT json_build_object(
  'version', current_setting('server_version_num')::int,
  'recovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery()
    THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  'replicas', CASE WHEN pg_is_in_recovery() THEN '[]'::json ELSE (
    SELECT coalesce(json_agg(json_build_object(
      'name', application_name, 'client', client_addr, 'state', state, 'sync', sync_state,
      'lag_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),
      'lag_seconds', extract(epoch FROM replay_lag)) ORDER BY application_name), '[]'::json)
    FROM pg_stat_replication) END,
  'slots', (SELECT coalesce(json_agg(json_build_object(
      'name', slot_name, 'active', active, 'wal_status', wal_status,
      'retained_bytes', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END)
      ORDER BY slot_name), '[]'::json)
    FROM pg_replication_slots WHERE slot_type = 'physical'),
  'receiver', (SELECT json_build_object('status', status, 'host', sender_host, 'slot', slot_name) FROM pg_stat_wal_receiver),
  'receive_lag_bytes', pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
  'replay_delay_seconds', CASE WHEN pg_last_wal_receive_lsn() IS NULL THEN NULL
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
);
SQL
}

# GET of Patroni's REST API or etcd's /health. Python comes with Patroni (and with Raspberry Pi
# OS), so it is there wherever they run.
http_get() {
  timeout 8 python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
        sys.stdout.write(answer.read().decode())
except urllib.error.HTTPError as error:
    sys.stdout.write(error.read().decode())  # both say what they are even when they answer 503
except Exception as error:
    print(f'{sys.argv[1]}: {error}')
    sys.exit(1)
PY
}

# 'show stat' on the admin socket haproxy.cfg names (readable by root and group haproxy only).
haproxy_stats() {
  timeout 8 sudo -n python3 - <<'PY'
import re, socket, sys
path = '/run/haproxy/admin.sock'
try:
    with open('/etc/haproxy/haproxy.cfg') as cfg:
        for line in cfg:
            found = re.match(r'\s*stats\s+socket\s+(?:unix@)?(/\S+)', line)
            if found:
                path = found.group(1)
                break
except OSError as error:
    print(f'cannot read /etc/haproxy/haproxy.cfg: {error}')
try:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall(b'show stat\n')
    data = b''
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sys.stdout.write(data.decode())
except OSError as error:
    print(f'{path}: {error}')
    sys.exit(1)
PY
}

section host host
section manifest cat /etc/pibake/manifest.json
section firstboot cat /var/lib/pibake/firstboot.status
section cloud-init cloud_init
# UNITS is a list of unit names (letters, digits, @_.:-): split on purpose, globbing is off.
# shellcheck disable=SC2086
[ -z "$UNITS" ] || section units timeout 5 systemctl show --no-pager --property=Id,LoadState,ActiveState,SubState,Result -- $UNITS
section failed timeout 5 systemctl list-units --state=failed --plain --no-legend --no-pager --full
section system timeout 5 systemctl is-system-running
section addresses ip -4 -br addr show
[ -z "$PG_PORT" ] || section postgresql postgresql
[ -z "$PATRONI_URL" ] || section patroni http_get "$PATRONI_URL"
[ -z "$ETCD_URL" ] || section etcd http_get "$ETCD_URL"
[ -z "$HAPROXY" ] || section haproxy haproxy_stats
`;
