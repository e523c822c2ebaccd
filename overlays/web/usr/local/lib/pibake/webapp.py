#!/usr/bin/python3
"""pibake demo web app: the Python standard library and psycopg 3 (Debian's python3-psycopg).

GET  /         HTML page: node, role, the newest demo row and replication state (read endpoint),
               and a form that adds a row
POST /         adds a demo row through the write endpoint (form field "message"), then back to /
GET  /status   the page's data as JSON
GET  /healthz  200 when the app can serve its page: a query on the read endpoint answered
GET  /primary  200 only when this node's own PostgreSQL (local endpoint) is a primary, else 503
GET  /replica  200 only when it is a standby (in recovery), else 503
The health endpoints answer JSON saying what they checked. HAProxy checks /healthz (web backend)
and /primary, /replica (PostgreSQL ports) through nginx on the web port.

Configuration: the JSON file named by PIBAKE_WEB_CONFIG (rendered by pibake): listen address and
port, the database, and three endpoints, each {"host", "port", "user"}: "local" (this node's
PostgreSQL), "read" (pages) and "write" (new rows). Writes may fail while reads go on, e.g.
while there is no primary. PIBAKE_WEB_LISTEN, PIBAKE_WEB_PORT and PIBAKE_<ENDPOINT>_HOST/_PORT
override the file (tests, debugging).

Passwords: the file named after the endpoint's user in $CREDENTIALS_DIRECTORY (systemd's
LoadCredential=). The app reads it and hands the password to libpq itself: libpq refuses a password
*file* with group bits, and systemd chooses the credential's mode (0400 owned by the service on
systemd 252, 0440 root plus an ACL on 257).

Connections stay open between requests (a few per endpoint). One that broke with its server is
replaced on the next request: that is the reconnect after a restart or a failover.

Start: the app exits non-zero, with the cause on stderr (the journal), when the local or the read
endpoint still refuses its login after a grace period (wait_for_logins): a wrong password is a
configuration error. While they do not answer
at all (a cluster still forming: Patroni bootstrapping, a replica not cloned yet, the load balancers
not up), it waits and tries again, saying so as a warning and in systemd's STATUS, since that is
the normal course of a first boot and not a failure. An unreachable write endpoint is only
reported. Once it listens it tells systemd (Type=notify) and never exits on database errors:
requests answer 503 instead.
"""
import html
import json
import os
import queue
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

ENDPOINTS = ("local", "read", "write")
POOL_SIZE = {"local": 2, "read": 4, "write": 2}
POOL_WAIT_SECONDS = 2  # a request waits this long for a free connection, then answers 503
CONNECT_TIMEOUT_SECONDS = 2  # libpq's smallest
MAX_MESSAGE = 200
HEALTH_PATHS = {"/healthz", "/primary", "/replica"}

STATUS_SQL = """
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'row', (SELECT row_to_json(d) FROM
           (SELECT id, message, created_at FROM pibake_demo ORDER BY id DESC LIMIT 1) d),
  'replay_delay_seconds', CASE WHEN pg_is_in_recovery() THEN
           round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 3) END,
  'replay_lag_bytes', CASE WHEN pg_is_in_recovery() THEN
           pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END,
  'replicas', (SELECT json_agg(json_build_object(
           'name', application_name, 'state', state,
           'replay_lag_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),
           'replay_lag', replay_lag::text))
         FROM pg_stat_replication WHERE NOT pg_is_in_recovery()))
"""
# What /healthz asks the read endpoint: logged in, and the demo table is readable (primary key index).
HEALTH_SQL = "SELECT pg_is_in_recovery(), (SELECT max(id) FROM pibake_demo)"
ROLE_SQL = "SELECT pg_is_in_recovery()"
INSERT_SQL = "INSERT INTO pibake_demo (message) VALUES (%s) RETURNING id"


def log(message):
    sys.stderr.write(f"pibake-webapp: {message}\n")
    sys.stderr.flush()


def one_line(error):
    return " ".join(str(error).split())


class Unavailable(Exception):
    """An endpoint gave no answer: no free connection, no server, a refused login or a failed statement."""


class Endpoint:
    """Up to POOL_SIZE persistent connections to one PostgreSQL endpoint, opened on demand."""

    def __init__(self, name, spec, database, password):
        self.name = name
        self.user = spec["user"]
        self.address = f"{spec['host']}:{spec['port']}"
        self.params = {
            "host": spec["host"], "port": spec["port"], "dbname": database, "user": self.user,
            "password": password, "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": f"pibake-webapp-{name}", "autocommit": True,
            # A server that vanished (power cut, failover) must fail the request, not hang it.
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
            "tcp_user_timeout": 5000, "options": "-c statement_timeout=5000",
        }
        self.idle = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(POOL_SIZE[name])
        self.failure = None  # the last error while the endpoint fails, else None

    def describe(self):
        return f"{self.name} endpoint {self.address} as {self.user}"

    def query(self, sql, params=(), resend=True):
        """All rows of `sql`; Unavailable when the endpoint does not answer or the statement fails."""
        if not self.slots.acquire(timeout=POOL_WAIT_SECONDS):
            raise Unavailable(f"{self.describe()}: all {POOL_SIZE[self.name]} connections busy")
        try:
            rows = self.attempt(sql, params, resend)
        except psycopg.Error as error:
            if self.failure is None:  # once per outage: it must not flood the journal
                log(f"{self.describe()} failed: {one_line(error)}")
            self.failure = one_line(error)
            raise Unavailable(f"{self.describe()}: {self.failure}") from error
        finally:
            self.slots.release()
        if self.failure is not None:
            self.failure = None
            log(f"{self.describe()} answers again")
        return rows

    def attempt(self, sql, params, resend):
        """A pooled connection may have died with its server since its last use (restart, failover).
        With `resend` (reads) the statement then runs again on a new connection; without (writes)
        the pooled connection is tested by a round trip first, so a write is never sent twice."""
        conn = self.pooled()
        if conn is not None:
            try:
                if resend:
                    return self.run(conn, sql, params)
                conn.execute("SELECT 1")
            except psycopg.OperationalError:
                conn.close()
                conn = None
        return self.run(conn or psycopg.connect(**self.params), sql, params)

    def pooled(self):
        while True:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                return None
            if not conn.closed:
                return conn

    def run(self, conn, sql, params):
        try:
            rows = conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            conn.close()
            raise
        except psycopg.Error:
            self.idle.put(conn)  # an SQL error leaves the connection usable
            raise
        self.idle.put(conn)
        return rows


def load_config():
    path = os.environ.get("PIBAKE_WEB_CONFIG", "/etc/pibake/web/app.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        config["listen"] = os.environ.get("PIBAKE_WEB_LISTEN", config["listen"])
        config["port"] = int(os.environ.get("PIBAKE_WEB_PORT", config["port"]))
        for name in ENDPOINTS:
            spec = config[name]
            spec["host"] = os.environ.get(f"PIBAKE_{name.upper()}_HOST", spec["host"])
            spec["port"] = int(os.environ.get(f"PIBAKE_{name.upper()}_PORT", spec["port"]))
            spec["user"] = str(spec["user"])
    except KeyError as error:
        raise SystemExit(f"pibake-webapp: {path}: no key {error} (pibake renders this file: rebuild the image)") from error
    except (OSError, ValueError, TypeError) as error:
        raise SystemExit(f"pibake-webapp: {path}: {one_line(error)} (pibake renders this file: rebuild the image)") from error
    return config


def password_of(user):
    """The credential named after the user, as systemd's LoadCredential= hands it over."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        raise SystemExit(f"pibake-webapp: no password for {user}: CREDENTIALS_DIRECTORY is not set"
                         " (pibake-webapp.service sets it with LoadCredential=; by hand, point it at a"
                         " folder with one file per database user)")
    try:
        with open(os.path.join(folder, user), encoding="utf-8") as f:
            return f.read().rstrip("\n")
    except OSError as error:
        raise SystemExit(f"pibake-webapp: no password for {user}: {one_line(error)}"
                         f" (the unit's LoadCredential={user}:... names the file)") from error


def render_page(config, status, error):
    def row(label, value):
        return f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"

    rows = [row("node", config["node"]), row("role", config["role"]), row("cluster", config["cluster"])]
    if error:
        rows.append(row("database", f"unavailable: {error}"))
    else:
        demo = status.get("row") or {}
        rows.append(row("database", "standby (read-only)" if status["in_recovery"] else "primary"))
        rows.append(row("newest demo row", f"#{demo.get('id')} {demo.get('message')}" if demo else "none"))
        if status["in_recovery"]:
            rows.append(row("replay delay (s)", status.get("replay_delay_seconds")))
            rows.append(row("replay lag (bytes)", status.get("replay_lag_bytes")))
        for replica in status.get("replicas") or []:
            rows.append(row(f"replica {replica['name']}",
                            f"{replica['state']}, lag {replica['replay_lag_bytes']} bytes"))
    title = html.escape(f"{config['cluster']}: {config['node']}")
    form = (f'<form method="post" action="/"><input name="message" maxlength="{MAX_MESSAGE}" required>'
            " <button>add a row (written on the primary)</button></form>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body><h1>{title}</h1><table>{''.join(rows)}</table>{form}</body></html>\n")


class Handler(BaseHTTPRequestHandler):
    server_version = "pibake-webapp"
    config = None  # set in main()
    endpoints = None

    def do_HEAD(self):
        self.respond(*self.answer(), head=True)

    def do_GET(self):
        self.respond(*self.answer())

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/":
            return self.respond(404, "not found\n")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8")) if 0 < length <= 4096 else {}
        except (ValueError, UnicodeDecodeError):
            form = {}
        message = " ".join((form.get("message") or [""])[0].split())
        if not 0 < len(message) <= MAX_MESSAGE:
            return self.respond(400, f"send a form with a field \"message\" of 1 to {MAX_MESSAGE} characters\n")
        try:
            row_id = self.endpoints["write"].query(INSERT_SQL, (message,), resend=False)[0][0]
        except Unavailable as error:
            return self.respond(503, f"not written: {one_line(error)}\nreads still work: GET /\n")
        self.respond(303, f"row {row_id} written\n", headers={"Location": "/"})

    def answer(self):
        path = self.path.split("?", 1)[0]
        if path in HEALTH_PATHS:
            return self.health(path)
        if path not in ("/", "/status"):
            return 404, "not found\n"
        try:
            status, error = self.endpoints["read"].query(STATUS_SQL)[0][0], None
        except Unavailable as failure:
            status, error = {}, one_line(failure)
        if path == "/status":
            body = {"node": self.config["node"], "role": self.config["role"], "error": error, **status,
                    "endpoints": {name: e.address for name, e in self.endpoints.items()}}
            return (503 if error else 200), json.dumps(body) + "\n", "application/json"
        return 200, render_page(self.config, status, error), "text/html; charset=utf-8"

    def health(self, path):
        endpoint = self.endpoints["local" if path in ("/primary", "/replica") else "read"]
        sql = HEALTH_SQL if path == "/healthz" else ROLE_SQL
        checked = {"endpoint": endpoint.name, "address": endpoint.address, "user": endpoint.user, "query": sql}
        started = time.monotonic()
        try:
            row = endpoint.query(sql)[0]
        except Unavailable as failure:
            checked["error"] = one_line(failure)
            healthy = False
        else:
            checked["in_recovery"] = row[0]
            if path == "/healthz":
                checked["newest_row"] = row[1]
            healthy = {"/healthz": True, "/primary": not row[0], "/replica": row[0]}[path]
        checked["ms"] = round((time.monotonic() - started) * 1000, 2)
        body = {"healthy": healthy, "node": self.config["node"], "checked": checked}
        return (200 if healthy else 503), json.dumps(body) + "\n", "application/json"

    def respond(self, code, body, kind="text/plain; charset=utf-8", head=False, headers=None):
        data = body.encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left before the answer (a load test ending, a timed-out check)

    def log_request(self, code="-", size="-"):
        pass  # nginx logs every request; database failures are logged by their endpoint

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        log(format % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 would drop connections under load


def notify(state):
    """sd_notify(3) for Type=notify; nothing when not started by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode("utf-8"), "\0" + address[1:] if address.startswith("@") else address)


def wait_for_logins(endpoints, first_delay=2.0, max_delay=30.0):
    """
    Logs in to the local and the read endpoint; waits while they do not answer, and while a login
    is refused for less than PIBAKE_WEB_LOGIN_GRACE_S (default 120 s): on the node Patroni makes the
    first primary, PostgreSQL accepts connections a moment before its bootstrap hook has made the
    app's roles. A login still refused after that ends the app with the cause.
    """
    grace = float(os.environ.get("PIBAKE_WEB_LOGIN_GRACE_S", "120"))
    delay = first_delay
    said = None
    for name in ("local", "read"):
        refused_since = None  # each endpoint gets the whole grace period
        while True:
            try:
                endpoints[name].query(ROLE_SQL)
                break
            except Unavailable as error:
                cause = one_line(error)
                if "authentication failed" in cause:
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since >= grace:
                        hint = (f" (credential {endpoints[name].user} does not match the role's password in the database,"
                                " or the role is not there yet: a replica gets it with its clone of the primary)")
                        raise SystemExit(f"pibake-webapp: cannot start: {cause}{hint}") from error
                else:
                    refused_since = None
                waiting = f"waiting for the {name} endpoint {endpoints[name].address}: {cause}"
                if waiting != said:
                    # <4>: journald files the line as a warning; nothing is wrong yet.
                    sys.stderr.write(f"<4>pibake-webapp: {waiting}; trying again every {max_delay:.0f} s at most\n")
                    sys.stderr.flush()
                    said = waiting
                notify(f"STATUS={waiting}")
                time.sleep(delay)
                delay = min(delay * 2, max_delay)


def main():
    config = load_config()
    passwords = {}
    endpoints = {}
    for name in ENDPOINTS:
        user = config[name]["user"]
        if user not in passwords:
            passwords[user] = password_of(user)
        endpoints[name] = Endpoint(name, config[name], config["database"], passwords[user])
    wait_for_logins(endpoints)
    try:
        endpoints["write"].query("SELECT 1")
    except Unavailable:
        pass  # reported by the endpoint; pages are served without a primary, writes answer 503
    Handler.config = config
    Handler.endpoints = endpoints
    try:
        server = Server((config["listen"], config["port"]), Handler)
    except OSError as error:
        raise SystemExit(f"pibake-webapp: cannot listen on {config['listen']}:{config['port']}: {one_line(error)}") from error
    ready = f"{config['node']} serving on {config['listen']}:{config['port']}"
    log(ready + ", reads from " + endpoints["read"].address + ", writes to " + endpoints["write"].address)
    notify(f"READY=1\nSTATUS={ready}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
