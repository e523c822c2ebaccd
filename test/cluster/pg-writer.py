#!/usr/bin/python3
"""Writer for the cluster test: INSERTs one row per statement through one persistent connection
(reconnecting after any error) until SIGTERM or SECONDS have passed, and prints one JSON line per
attempt: [epoch ms, seq, 1 = acknowledged | 0 = failed, error]. A failed INSERT's outcome is
unknown to the client (it may have committed); an acknowledged one must survive any failover.

usage: PGPASSWORD=... pg-writer.py DSN LABEL SECONDS
Each row's message is "LABEL SEQ", so the test can find the acknowledged rows afterwards.
"""
import json
import signal
import sys
import time

import psycopg2

stop = False


def on_term(signum, frame):
    global stop
    stop = True


def main():
    dsn, label, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    signal.signal(signal.SIGTERM, on_term)
    end = time.time() + seconds
    out = sys.stdout
    seq = 0
    conn = None
    while not stop and time.time() < end:
        try:
            if conn is None:
                conn = psycopg2.connect(dsn, connect_timeout=2, application_name="pibake-cluster-writer")
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("INSERT INTO pibake_demo (message) VALUES (%s)", (f"{label} {seq}",))
            out.write(json.dumps([int(time.time() * 1000), seq, 1]) + "\n")
        except Exception as error:  # every failure is a data point; start over with a new connection
            out.write(json.dumps([int(time.time() * 1000), seq, 0, type(error).__name__]) + "\n")
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
            conn = None
            time.sleep(0.05)
        out.flush()
        seq += 1


if __name__ == "__main__":
    main()
