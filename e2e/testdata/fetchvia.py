"""GETs PATH from a relay on 127.0.0.1:PORT with Host (and TLS server name)
HOST, from wherever it runs (the LAN-address test runs it inside its
network namespace, where names under .localhost do not resolve).

usage: fetchvia.py TIMEOUT_SECONDS http|https HOST PORT PATH [AUTHORIZATION]

AUTHORIZATION, when given, is sent as the Authorization header (the relay
wants an app token as HTTP Basic credentials). Prints the HTTP status on the first line and the body after it. A failed
connection prints "error: ..." on stderr and exits 3.
"""
import http.client
import socket
import ssl
import sys


def main(timeout, scheme, host, port, path, authorization=""):
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=float(timeout))
        if scheme == "https":
            ctx = ssl._create_unverified_context()
            raw = socket.create_connection(("127.0.0.1", int(port)), timeout=float(timeout))
            c.sock = ctx.wrap_socket(raw, server_hostname=host)
        headers = {"Host": host}
        if authorization:
            headers["Authorization"] = authorization
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        sys.exit(3)
    print(r.status)
    sys.stdout.write(body.decode("utf-8", "replace"))

if __name__ == "__main__":
    main(*sys.argv[1:])
