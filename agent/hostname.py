"""This machine's name as people know it: the FQDN when the resolver knows one, else the host name.

`socket.getfqdn()` alone answers "localhost" on the many machines whose /etc/hosts maps their own
name to 127.0.0.1 next to "localhost" (it returns the first name of that address), so every
worker of a fleet was listed as "localhost".
"""

from __future__ import annotations

import socket


def machine_hostname() -> str:
    host = socket.gethostname()
    if "." in host:
        return host  # already fully qualified
    fqdn = socket.getfqdn(host)
    return fqdn if fqdn.startswith(host + ".") else host
