"""Talks to a hub's XML-RPC port through the hubtunnel relay with Python's
own xmlrpc.client, the way HomeMatic scripts and apps do.

usage: xmlrpc_client.py http://hubtunnel:TOKEN@HUB.localhost:PORT/
   or: xmlrpc_client.py http://hubtunnel:TOKEN@localhost:PORT/  (the relay's own name)

The relay routes by the Host header, so the transport connects to 127.0.0.1
at the URL's port and sends the URL's host in Host. xmlrpc.client sends the
URL's user info (the hub's app token) as HTTP Basic credentials. Prints one
line per check and "OK" at the end; any failed check exits non-zero.
"""
import http.client
import sys
import xmlrpc.client


class LoopbackConnection(http.client.HTTPConnection):
    """An HTTP connection to 127.0.0.1:port that sends Host: host_header."""

    def __init__(self, host_header, port, timeout):
        super().__init__("127.0.0.1", port, timeout=timeout)
        self.host_header = host_header

    def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
        super().putrequest(method, url, skip_host=True,
                           skip_accept_encoding=skip_accept_encoding)
        self.putheader("Host", self.host_header)


class LoopbackTransport(xmlrpc.client.Transport):
    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _ = self.get_host_info(host)
        port = int(chost.rsplit(":", 1)[1])
        self._connection = host, LoopbackConnection(chost, port, timeout=30)
        return self._connection[1]


def main(url):
    p = xmlrpc.client.ServerProxy(url, transport=LoopbackTransport())

    devs = p.listDevices()
    assert isinstance(devs, list) and devs, devs
    addrs = [d["ADDRESS"] for d in devs]
    assert "NEQ0000002:1" in addrs, addrs
    print("listDevices: %d entries, NEQ0000002:1 present" % len(devs))

    assert p.setValue("NEQ0000002:1", "STATE", True) == ""
    v = p.getValue("NEQ0000002:1", "STATE")
    assert v is True, v
    print("getValue NEQ0000002:1 STATE: %r" % v)

    try:
        p.getValue("NEQ9999999:1", "STATE")
    except xmlrpc.client.Fault as e:
        print("fault: %d %s" % (e.faultCode, e.faultString))
    else:
        raise AssertionError("getValue of an unknown device raised no Fault")

    print("OK")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except xmlrpc.client.ProtocolError as e:
        # Its text would repeat the URL, token and all.
        sys.exit("HTTP error: %d %s" % (e.errcode, e.errmsg))
