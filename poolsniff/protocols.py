"""DNS messages, TLS ClientHellos and TLS 1.2 server certificates: where pool host names
show up outside the mining protocol. The parsers are bounded and never raise.
"""

from __future__ import annotations

import socket
import struct

from poolsniff import native

MAX_NAME = 255
MAX_RRS = 64


def _name(buf: bytes, off: int) -> tuple[str | None, int]:
    """Read a (possibly compressed) DNS name; returns (name, offset after it)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if off >= len(buf):
            return None, off
        ln = buf[off]
        if ln == 0:
            off += 1
            break
        if ln & 0xC0 == 0xC0:
            if off + 1 >= len(buf):
                return None, off
            ptr = ((ln & 0x3F) << 8) | buf[off + 1]
            if end < 0:
                end = off + 2
            if ptr >= off or jumps > 16:      # pointers must point backwards
                return None, off
            off = ptr
            jumps += 1
            continue
        if ln & 0xC0:
            return None, off
        lab = buf[off + 1:off + 1 + ln]
        if len(lab) < ln:
            return None, off
        total += ln + 1
        if total > MAX_NAME:
            return None, off
        labels.append(lab.decode("ascii", "replace").lower())
        off += 1 + ln
    return ".".join(labels), (end if end >= 0 else off)


def parse_dns(buf: bytes) -> tuple[bool, list[str], list[tuple[str, int, str]]] | None:
    """Parse a DNS message: (is_response, question names, answers as (name, type, value)).

    Answer types kept: A (1), AAAA (28), CNAME (5). ``None`` if it is not DNS. In C when the
    extension is built (a link's DNS is most of what a benign capture asks Python to parse);
    :func:`parse_dns_py` is the reference, and tests compare the two.
    """
    fp = native.c_engine()
    if fp is not None:
        return fp.parse_dns(buf)        # type: ignore[no-any-return]
    return parse_dns_py(buf)


def parse_dns_py(buf: bytes) -> tuple[bool, list[str], list[tuple[str, int, str]]] | None:
    """:func:`parse_dns` in Python."""
    if len(buf) < 12:
        return None
    _id, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", buf, 0)
    if flags & 0x7800:          # opcode other than QUERY
        return None
    if qd > 4 or an > 256:
        return None
    off = 12
    qnames: list[str] = []
    for _ in range(qd):
        name, off = _name(buf, off)
        if name is None or off + 4 > len(buf):
            return None
        qnames.append(name)
        off += 4
    answers: list[tuple[str, int, str]] = []
    for _ in range(min(an, MAX_RRS)):
        name, off = _name(buf, off)
        if name is None or off + 10 > len(buf):
            break
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", buf, off)
        off += 10
        rdata_off = off
        off += rdlen
        if off > len(buf):
            break
        if rtype == 1 and rdlen == 4:
            answers.append((name, 1, socket.inet_ntop(socket.AF_INET, buf[rdata_off:off])))
        elif rtype == 28 and rdlen == 16:
            answers.append((name, 28, socket.inet_ntop(socket.AF_INET6, buf[rdata_off:off])))
        elif rtype == 5:
            target, _ = _name(buf, rdata_off)
            if target:
                answers.append((name, 5, target))
    return bool(flags & 0x8000), qnames, answers


def resolve_chain(qname: str, answers: list[tuple[str, int, str]]) -> tuple[list[str], list[str]]:
    """Follow CNAMEs from ``qname``: (every name in the chain, the addresses it ends at)."""
    names = [qname]
    seen = {qname}
    changed = True
    while changed and len(names) < 16:
        changed = False
        for n, t, v in answers:
            if t == 5 and n in seen and v not in seen:
                names.append(v)
                seen.add(v)
                changed = True
    ips = [v for n, t, v in answers if t in (1, 28) and n in seen]
    return names, ips


def looks_like_tls(data: bytes) -> bool:
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def client_hello_sni(data: bytes) -> tuple[bool, str | None, list[str]]:
    """(complete, SNI, ALPN list) from the start of a client's TLS stream.

    ``complete`` is False while more bytes are needed.
    """
    if len(data) < 5 or not looks_like_tls(data):
        return True, None, []
    rec_len = struct.unpack_from("!H", data, 3)[0]
    if len(data) < 5 + rec_len:
        return (len(data) >= 16384 + 5), None, []
    hs = data[5:5 + rec_len]
    if len(hs) < 4 or hs[0] != 1:
        return True, None, []
    body = hs[4:4 + int.from_bytes(hs[1:4], "big")]
    try:
        off = 2 + 32
        off += 1 + body[off]                                          # session id
        off += 2 + struct.unpack_from("!H", body, off)[0]             # cipher suites
        off += 1 + body[off]                                          # compression
        if off + 2 > len(body):
            return True, None, []
        ext_end = off + 2 + struct.unpack_from("!H", body, off)[0]
        off += 2
        sni = None
        alpn: list[str] = []
        while off + 4 <= min(ext_end, len(body)):
            et, el = struct.unpack_from("!HH", body, off)
            ext = body[off + 4:off + 4 + el]
            off += 4 + el
            if et == 0 and len(ext) >= 5 and ext[2] == 0:
                nl = struct.unpack_from("!H", ext, 3)[0]
                sni = ext[5:5 + nl].decode("ascii", "replace").lower()[:MAX_NAME]
            elif et == 16 and len(ext) >= 2:
                p = 2
                while p < len(ext) and len(alpn) < 8:
                    ln = ext[p]
                    alpn.append(ext[p + 1:p + 1 + ln].decode("ascii", "replace"))
                    p += 1 + ln
        return True, sni, alpn
    except (IndexError, struct.error):
        return True, None, []


#: the server's first flight read at most this far for its certificate (a chain of a few
#: certificates fits; past it the search ends)
MAX_SERVER_FLIGHT = 65536
TLS13 = 0x0304


def server_certificate(data: bytes) -> tuple[bool, bytes | None]:
    """(complete, the first certificate's DER or None) from the start of a server's TLS
    stream: its handshake records (ServerHello, Certificate...) read in order.

    In TLS 1.2 and earlier the Certificate message follows the ServerHello in clear; in
    TLS 1.3 (a ServerHello whose supported_versions says 0x0304) it is encrypted, and
    a resumed session sends none: complete, without one. ``complete`` is False while more
    bytes are needed."""
    off = 0
    hs = b""
    while off + 5 <= len(data):
        ctype = data[off]
        rec_len = struct.unpack_from("!H", data, off + 3)[0]
        if ctype != 22:                 # not a handshake record: the first flight is over
            return True, None
        if off + 5 + rec_len > len(data):
            break
        hs += data[off + 5:off + 5 + rec_len]
        off += 5 + rec_len
        p = 0
        while p + 4 <= len(hs):
            mtype = hs[p]
            mlen = int.from_bytes(hs[p + 1:p + 4], "big")
            if p + 4 + mlen > len(hs):
                break
            body = hs[p + 4:p + 4 + mlen]
            if mtype == 2 and _server_hello_tls13(body):
                return True, None
            if mtype == 11:
                return True, _first_certificate(body)
            if mtype == 14:             # ServerHelloDone: no certificate was sent
                return True, None
            p += 4 + mlen
    return len(data) >= MAX_SERVER_FLIGHT, None


def _server_hello_tls13(body: bytes) -> bool:
    try:
        off = 2 + 32
        off += 1 + body[off]                                          # session id
        off += 2 + 1                                                  # cipher suite, compression
        if off + 2 > len(body):
            return False
        end = min(len(body), off + 2 + struct.unpack_from("!H", body, off)[0])
        off += 2
        while off + 4 <= end:
            et, el = struct.unpack_from("!HH", body, off)
            if et == 43 and el == 2:                                  # supported_versions
                return bool(struct.unpack_from("!H", body, off + 4)[0] == TLS13)
            off += 4 + el
    except (IndexError, struct.error):
        return False
    return False


def _first_certificate(body: bytes) -> bytes | None:
    """The first (the server's own) certificate of a TLS 1.2 Certificate message."""
    if len(body) < 6:
        return None
    n = int.from_bytes(body[3:6], "big")
    der = body[6:6 + n]
    return der if len(der) == n and n > 0 else None


def certificate_names(der: bytes) -> list[str] | None:
    """The DNS names a certificate is for: its subjectAltName dNSNames, then its subject's
    common names, lower case; None when it cannot be read. The X.509 parsing is
    pyca/cryptography's (imported when a certificate is first read). Certificates in use
    carry DER quirks it refuses in one part (an encoded default in BasicConstraints makes
    every extension unreadable): the subject and the extensions are read apart."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    # a third-party parser on hostile bytes raises more than ValueError (DuplicateExtension,
    # UnsupportedGeneralNameType...): whatever it raises, that part is unreadable
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001
        return None
    names: list[str] = []
    read = 0
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names += san.value.get_values_for_type(x509.DNSName)
        read += 1
    except x509.ExtensionNotFound:
        read += 1
    except Exception:  # noqa: BLE001
        pass
    try:
        for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            if isinstance(attr.value, str):
                names.append(attr.value)
        read += 1
    except Exception:  # noqa: BLE001
        pass
    if not read:
        return None
    out: list[str] = []
    for n in names:
        n = n.strip().lower()[:MAX_NAME]
        if n and n not in out and len(out) < 32:
            out.append(n)
    return out
