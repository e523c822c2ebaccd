#!/usr/bin/python3
"""pibake demo web app: Python standard library only, talks to PostgreSQL through psql.

GET /          an HTML page: node, role, the newest demo row of the local database, replication lag
GET /status    the same as JSON
GET /healthz   200 when the app and its local PostgreSQL answer, else 503
GET /primary   200 only when the local PostgreSQL is a primary (not in recovery), else 503
GET /replica   200 only when the local PostgreSQL is a standby (in recovery), else 503
HAProxy health-checks /healthz, /primary and /replica (through nginx on the web port).

Configuration: the JSON file named by PIBAKE_WEB_CONFIG (rendered by pibake); PIBAKE_WEB_LISTEN,
PIBAKE_WEB_PORT, PIBAKE_PGHOST, PIBAKE_PGPORT and PIBAKE_PG_BINDIR override it (tests, debugging).
The password comes from the file named by PGPASSFILE, which psql reads itself.
"""
import html
import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
QUIET_PATHS = {"/healthz", "/primary", "/replica"}


class DatabaseError(Exception):
    pass


def load_config():
    with open(os.environ.get("PIBAKE_WEB_CONFIG", "/etc/pibake/web/app.json"), encoding="utf-8") as f:
        config = json.load(f)
    pg = config["pg"]
    config["listen"] = os.environ.get("PIBAKE_WEB_LISTEN", config["listen"])
    config["port"] = int(os.environ.get("PIBAKE_WEB_PORT", config["port"]))
    pg["host"] = os.environ.get("PIBAKE_PGHOST", pg["host"])
    pg["port"] = int(os.environ.get("PIBAKE_PGPORT", pg["port"]))
    pg["bindir"] = os.environ.get("PIBAKE_PG_BINDIR", pg["bindir"])
    return config


def query_one(config, sql):
    """First column of the first row of `sql`, as text; DatabaseError when PostgreSQL does not answer."""
    pg = config["pg"]
    env = dict(os.environ, PGHOST=pg["host"], PGPORT=str(pg["port"]), PGDATABASE=pg["database"],
               PGUSER=pg["user"], PGCONNECT_TIMEOUT="2", PGAPPNAME="pibake-webapp")
    try:
        done = subprocess.run([os.path.join(pg["bindir"], "psql"), "-X", "-q", "-A", "-t",
                               "-v", "ON_ERROR_STOP=1", "-c", sql],
                              env=env, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DatabaseError(str(error)) from error
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise DatabaseError(lines[-1] if lines else f"psql exited with {done.returncode}")
    return done.stdout.strip()


def in_recovery(config):
    return query_one(config, "SELECT pg_is_in_recovery()") == "t"


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
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body><h1>{title}</h1><table>{''.join(rows)}</table></body></html>\n")


class Handler(BaseHTTPRequestHandler):
    server_version = "pibake-webapp"
    config = None  # set in main()

    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        self.handle_request(head=False)

    def handle_request(self, head):
        path = self.path.split("?", 1)[0]
        try:
            if path in QUIET_PATHS:
                code, body, kind = self.health(path)
            elif path in ("/", "/status"):
                try:
                    status, error = json.loads(query_one(self.config, STATUS_SQL)), None
                except (DatabaseError, ValueError) as failure:
                    status, error = {}, str(failure)
                if path == "/status":
                    body = json.dumps({"node": self.config["node"], "role": self.config["role"],
                                       "error": error, **status}) + "\n"
                    code, kind = (503 if error else 200), "application/json"
                else:
                    code, body, kind = 200, render_page(self.config, status, error), "text/html; charset=utf-8"
            else:
                code, body, kind = 404, "not found\n", "text/plain; charset=utf-8"
        except Exception as failure:  # keep serving; report the failure to this client only
            code, body, kind = 500, f"internal error: {failure}\n", "text/plain; charset=utf-8"
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def health(self, path):
        try:
            recovery = in_recovery(self.config)
        except DatabaseError as failure:
            return 503, f"database unavailable: {failure}\n", "text/plain; charset=utf-8"
        healthy = {"/healthz": True, "/primary": not recovery, "/replica": recovery}[path]
        state = "standby" if recovery else "primary"
        return (200 if healthy else 503), f"{state}\n", "text/plain; charset=utf-8"

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        # Health checks arrive every second from each load balancer: do not fill the SD card.
        if self.path.split("?", 1)[0] not in QUIET_PATHS:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main():
    config = load_config()
    Handler.config = config
    server = ThreadingHTTPServer((config["listen"], config["port"]), Handler)
    server.daemon_threads = True
    print(f"pibake-webapp: {config['node']} listening on {config['listen']}:{config['port']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
