"""Stands in for a CCU's services in the LAN-address test: listens on each
port given, on every address, and answers every HTTP request with the
address the connection came from (what the CCU's lighttpd checks against
127.0.0.1). Prints "PORT from ADDR" for each connection that reaches it.

usage: peerecho.py PORT...
"""
import http.server
import socketserver
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def setup(self):
        print("%d from %s" % (self.server.server_address[1], self.client_address[0]), flush=True)
        super().setup()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(ports):
    servers = [Server(("0.0.0.0", int(p)), Handler) for p in ports]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("listening", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
