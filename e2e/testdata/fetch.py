"""GETs a URL from wherever it runs (the WireGuard test runs it inside its
network namespace), optionally from a given source address.

usage: fetch.py TIMEOUT_SECONDS URL [SOURCE_IP]

Prints the HTTP status on the first line and the body after it. A failed
connection prints "error: ..." on stderr and exits 3.
"""
import http.client
import sys
import urllib.parse


def main(timeout, url, source=None):
    u = urllib.parse.urlsplit(url)
    src = (source, 0) if source else None
    try:
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=float(timeout),
                                       source_address=src)
        c.request("GET", u.path or "/")
        r = c.getresponse()
        body = r.read()
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(3)
    print(r.status)
    sys.stdout.write(body.decode("utf-8", "replace"))


if __name__ == "__main__":
    main(*sys.argv[1:])
