#!/usr/bin/python3
"""HTTP probe for the cluster test: GET `url` over a fresh connection, one request after the
other, for `seconds`; print one JSON line per request: [epoch ms, status (0 = error), node or error,
duration ms].

usage: http-probe.py URL SECONDS [TIMEOUT_SECONDS]
"""
import http.client
import json
import re
import sys
import time
import urllib.parse

TITLE = re.compile(r"<title>[^<]*?: ([\w-]+)</title>")


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    seconds = float(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    end = time.time() + seconds
    out = sys.stdout
    while time.time() < end:
        started = time.time()
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
            conn.request("GET", url.path or "/")
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            conn.close()
            match = TITLE.search(body)
            record = [int(started * 1000), response.status, match.group(1) if match else ""]
        except Exception as error:  # every failure is a data point
            record = [int(started * 1000), 0, type(error).__name__]
        record.append(round((time.time() - started) * 1000, 1))
        out.write(json.dumps(record) + "\n")
        time.sleep(0.01)
    out.flush()


if __name__ == "__main__":
    main()
