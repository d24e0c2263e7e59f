/*
 * poolsniff._fastpath: the two per-record loops of the batch path, in C.
 *
 *   index_pcap(buf, pos, end, big_endian, limit, max_records, max_bytes)
 *       -> (n x 4 int64 as bytes: start, incl, sec, frac; new_pos)
 *   index_pcapng(buf, pos, end, big_endian, n_ifaces, max_records, max_bytes, max_block)
 *       -> (4 x n int64 columns as bytes, new_pos, unknown_blocks)
 *   parse_headers(buf, offs, incl, linktype) -> bytes of NCOL x n int64 columns
 *   parse_dns(buf) -> None | (is_response, [question names], [(name, type, value)])
 *
 * They compute what the numpy code in poolsniff/batch.py and poolsniff/sources/pcapfile.py
 * computes (that code stays as the fallback). The header pass also opens the tunnels and
 * link types the numpy pass leaves to the per-packet decoder (Linux cooked, BSD loopback, MPLS,
 * PPPoE, PPP, Cisco HDLC, GRE/ERSPAN, VXLAN, Geneve, GTP-U, IP-in-IP): tests/test_fastpath_c.py checks that every
 * record numpy takes C takes with the same columns, and that every record C takes is what
 * poolsniff/decode.py (the reference) makes of it, on every capture and on damaged bytes.
 * numpy spends most of its time here on temporaries: one pass per record in C
 * replaces some forty whole-array passes. Every read is bounds-checked against the
 * record and the buffer, so hostile records cannot read outside the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>

/* column order: keep in step with HEADER_COLUMNS in poolsniff/batch.py */
enum {
    C_OK, C_V6, C_TCP, C_ALEN, C_SRC_AT, C_DST_AT, C_SPORT, C_DPORT, C_PSTART, C_PLEN,
    C_MISSING, C_WIRELEN, C_FLAGS, C_SEQ, C_EA, C_H, C_DUPKEY, NCOL
};

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)0)
#endif

static const uint64_t K1 = 0x9E3779B97F4A7C15ULL;
static const uint64_t K2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t K3 = 0x165667B19E3779F9ULL;
static const uint64_t K4 = 0x27D4EB2F165667C5ULL;     /* the duplicate key's (poolsniff.dedup) */
static const uint64_t K5 = 0xFF51AFD7ED558CCDULL;

static inline uint32_t rd16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t rd32(const uint8_t *p) { return (rd16(p) << 16) | rd16(p + 2); }
static inline uint32_t rd32_order(const uint8_t *p, int big) {
    return big ? rd32(p) : ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

/* an address folded to 64 bits: IPv4 as is, IPv6 as its high half XOR its low half */
static inline uint64_t fold(const uint8_t *p, int v6) {
    if (!v6)
        return rd32(p);
    uint64_t hi = ((uint64_t)rd32(p) << 32) | rd32(p + 4);
    uint64_t lo = ((uint64_t)rd32(p + 8) << 32) | rd32(p + 12);
    return hi ^ lo;
}

/* an indexer's range: end clamped to the buffer; a negative position or count is an error
 * (the buffer released, -1) */
static int index_range(Py_buffer *b, Py_ssize_t pos, Py_ssize_t *end, Py_ssize_t max_records) {
    if (*end > b->len)
        *end = b->len;
    if (pos < 0 || max_records < 0) {
        PyBuffer_Release(b);
        PyErr_SetString(PyExc_ValueError, "negative position or count");
        return -1;
    }
    return 0;
}

/* the indexers' output: rows of `width` int64 in a buffer that doubles when full (called
 * without the GIL: PyMem_Raw), then one bytes object of the rows written */
static int rows_grow(int64_t **rows, Py_ssize_t *room, Py_ssize_t width) {
    int64_t *more = (int64_t *)PyMem_RawRealloc(*rows, (size_t)*room * 2 * width * sizeof(int64_t));
    if (more == NULL)
        return -1;
    *rows = more;
    *room *= 2;
    return 0;
}

static PyObject *rows_bytes(int64_t *rows, Py_ssize_t k, Py_ssize_t width, int nomem) {
    PyObject *out = nomem ? PyErr_NoMemory()
                          : PyBytes_FromStringAndSize((const char *)rows, k * width * (Py_ssize_t)sizeof(int64_t));
    PyMem_RawFree(rows);
    return out;
}

static PyObject *index_pcap(PyObject *self, PyObject *args) {
    Py_buffer b;
    Py_ssize_t pos, end, limit, max_records, max_bytes;
    int big;
    if (!PyArg_ParseTuple(args, "y*nnpnnn", &b, &pos, &end, &big, &limit, &max_records, &max_bytes))
        return NULL;
    if (index_range(&b, pos, &end, max_records) < 0)
        return NULL;
    const uint8_t *a = (const uint8_t *)b.buf;
    /* one pass (a block is larger than the caches: a second walk missed them again); a row
     * per record (position, captured length, seconds, fraction) goes to a buffer that
     * doubles, then to a bytes object of the exact size */
    const Py_ssize_t w = 4;
    Py_ssize_t cap = pos + max_bytes, p = pos, k = 0, room = 4096;
    int nomem = 0;
    int64_t *st = (int64_t *)PyMem_RawMalloc((size_t)room * w * sizeof(int64_t));
    if (st == NULL) {
        PyBuffer_Release(&b);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    while (p + 16 <= end && k < max_records && p < cap) {
        uint32_t incl = rd32_order(a + p + 8, big);
        if ((Py_ssize_t)incl > limit || p + 16 + (Py_ssize_t)incl > end)
            break;
        if (k == room && rows_grow(&st, &room, w) < 0) {
            nomem = 1;
            break;
        }
        int64_t *r = st + w * k++;
        r[0] = p;
        r[1] = incl;
        r[2] = rd32_order(a + p, big);
        r[3] = rd32_order(a + p + 4, big);
        p += 16 + (Py_ssize_t)incl;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    PyObject *out = rows_bytes(st, k, w, nomem);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nn)", out, p);
}

/* pcapng: the packet blocks (enhanced, simple, obsolete) from pos, as four int64 columns
 * (data offset, captured length, timestamp ticks, interface; -1 for a simple packet block,
 * which has no timestamp). Blocks of unknown types are stepped over and counted. It stops
 * before what the per-block reader in poolsniff/sources/pcapfile.py must see itself: a
 * section or interface header, a block cut short by end, and every kind of damage that
 * reader reports (a bad block length, a packet block too short for its fields, an unknown
 * interface, a captured length past its block), so that reader decides and words it. */
enum { NG_OFF, NG_INCL, NG_TICKS, NG_IFACE, NG_NCOL };

static PyObject *index_pcapng(PyObject *self, PyObject *args) {
    Py_buffer b;
    Py_ssize_t pos, end, n_ifaces, max_records, max_bytes, max_block;
    int big;
    if (!PyArg_ParseTuple(args, "y*nnpnnnn", &b, &pos, &end, &big, &n_ifaces, &max_records,
                          &max_bytes, &max_block))
        return NULL;
    if (index_range(&b, pos, &end, max_records) < 0)
        return NULL;
    const uint8_t *a = (const uint8_t *)b.buf;
    Py_ssize_t cap = pos + max_bytes, p = pos, k = 0, room = 4096, unknown = 0;
    int nomem = 0;
    int64_t *col = (int64_t *)PyMem_RawMalloc((size_t)room * NG_NCOL * sizeof(int64_t));
    if (col == NULL) {
        PyBuffer_Release(&b);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    while (p + 12 <= end && k < max_records && p < cap) {
        const uint8_t *h = a + p;
        if (h[0] == 0x0A && h[1] == 0x0D && h[2] == 0x0D && h[3] == 0x0A)
            break;                                      /* a section header: byte order, interfaces */
        uint32_t type = rd32_order(h, big), blen = rd32_order(h + 4, big);
        if (blen < 12 || blen % 4 || (Py_ssize_t)blen > max_block || p + (Py_ssize_t)blen > end)
            break;
        Py_ssize_t body = (Py_ssize_t)blen - 12;        /* without the two length fields */
        int64_t off, incl, ticks, iface;
        if (type == 6 || type == 2) {
            if (body < 20)
                break;
            if (type == 6) {
                iface = rd32_order(h + 8, big);
            } else {
                iface = big ? rd16(h + 8) : ((uint32_t)h[9] << 8) | h[8];
            }
            ticks = ((int64_t)rd32_order(h + 12, big) << 32) | rd32_order(h + 16, big);
            incl = rd32_order(h + 20, big);
            if (iface >= n_ifaces || incl > body - 20)
                break;
            off = p + 28;
        } else if (type == 3) {
            if (n_ifaces < 1 || body < 4)
                break;
            uint32_t orig = rd32_order(h + 8, big);
            incl = (int64_t)orig < body - 4 ? (int64_t)orig : body - 4;
            off = p + 12;
            ticks = 0;
            iface = -1;
        } else if (type == 1) {
            break;                                      /* an interface: link type, clock */
        } else {
            unknown++;
            p += blen;
            continue;
        }
        if (k == room && rows_grow(&col, &room, NG_NCOL) < 0) {
            nomem = 1;
            break;
        }
        int64_t *r = col + k * NG_NCOL;
        r[NG_OFF] = off;
        r[NG_INCL] = incl;
        r[NG_TICKS] = ticks;
        r[NG_IFACE] = iface;
        k++;
        p += blen;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    PyObject *out = rows_bytes(col, k, NG_NCOL, nomem);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nnn)", out, p, unknown);
}

static int as_i64(Py_buffer *v, Py_ssize_t n, const char *what) {
    if (v->itemsize != 8 || v->len != n * 8) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd int64 values", what, n);
        return -1;
    }
    return 0;
}

#define MAX_ENCAP 4          /* tunnels opened per record (decode.MAX_ENCAP) */
#define IS_VLAN(e) ((e) == 0x8100 || (e) == 0x88A8 || (e) == 0x9100 || (e) == 0x9200)

/* The IP version a PPP protocol number carries (0x0021 IPv4, 0x0057 IPv6), or 0. */
static inline int ppp_ip(uint32_t proto) {
    return proto == 0x0021 ? 4 : proto == 0x0057 ? 6 : 0;
}

/* A PPPoE session header at off, then its PPP protocol (decode._pppoe): the IP header's
 * offset and *want, or -1. */
static int64_t pppoe_ip(const uint8_t *a, int64_t off, int64_t end, int *want) {
    if (off + 8 > end || a[off] != 0x11 || a[off + 1] != 0)
        return -1;
    *want = ppp_ip(rd16(a + off + 6));
    return *want ? off + 8 : -1;
}

/* The IP header after an EtherType at et_at (payload at off, captured bytes end at end):
 * up to two VLAN tags, then IPv4/IPv6, a PPPoE session or an MPLS label stack (IP after
 * it, or a control word and an Ethernet frame). *want: the IP version the link layer
 * announces (0: the header's own version nibble decides, as decode.py does). -1: the
 * per-packet decoder takes the record (it decodes or counts what this does not take). */
static int64_t ether_ip(const uint8_t *a, int64_t et_at, int64_t off, int64_t end, int *want,
                        int nested) {
    if (off > end)
        return -1;
    uint32_t et = rd16(a + et_at);
    for (int t = 0; t < 2; t++) {
        if (IS_VLAN(et) && off + 4 <= end) {
            et = rd16(a + off + 2);
            off += 4;
        }
    }
    if (et == 0x0800 || et == 0x86DD) {
        *want = et == 0x0800 ? 4 : 6;
        return off;
    }
    if (et == 0x8864)                                  /* PPPoE session */
        return pppoe_ip(a, off, end, want);
    if ((et == 0x8847 || et == 0x8848) && !nested) {   /* MPLS */
        int k;
        for (k = 0; k < 8; k++) {
            if (off + 4 > end)
                return -1;
            int bottom = a[off + 2] & 1;
            off += 4;
            if (bottom)
                break;
        }
        if (k == 8 || off + 1 > end)
            return -1;
        int nib = a[off] >> 4;
        if (nib == 4 || nib == 6) {
            *want = 0;
            return off;
        }
        if (nib == 0 && off + 18 <= end)               /* control word + Ethernet (EoMPLS) */
            return ether_ip(a, off + 16, off + 18, end, want, 1);
    }
    return -1;
}

/* An IP header right at `at` inside a tunnel: its version nibble decides (-1: not IP). */
static int64_t raw_ip(const uint8_t *a, int64_t at, int64_t end, int *want) {
    if (at + 1 > end || ((a[at] >> 4) != 4 && (a[at] >> 4) != 6))
        return -1;
    *want = 0;
    return at;
}

static int64_t tunnel_ether(const uint8_t *a, int64_t at, int64_t end, int *want) {
    if (at + 14 > end)
        return -1;
    return ether_ip(a, at + 12, at + 14, end, want, 0);
}

/* GRE at l4 (decode._gre): the inner IP header, or -1 */
static int64_t gre_inner(const uint8_t *a, int64_t l4, int64_t end, int *want) {
    if (l4 + 4 > end)
        return -1;
    uint32_t fl = rd16(a + l4), pt = rd16(a + l4 + 2);
    if ((fl & 0x4007) || (fl & 0x0F00))
        return -1;
    int64_t st = l4 + 4 + 4 * ((fl & 0x8000 ? 1 : 0) + (fl & 0x2000 ? 1 : 0) + (fl & 0x1000 ? 1 : 0));
    if (pt == 0x0800 || pt == 0x86DD)
        return raw_ip(a, st, end, want);
    if (pt == 0x6558)
        return tunnel_ether(a, st, end, want);
    if (pt == 0x88BE)                                  /* ERSPAN I (no sequence) / II */
        return tunnel_ether(a, st + (fl & 0x1000 ? 8 : 0), end, want);
    if (pt == 0x22EB) {                                /* ERSPAN III */
        if (st + 12 > end || ((a[st + 10] >> 2) & 0x1F) != 0)
            return -1;
        return tunnel_ether(a, st + 12 + (a[st + 11] & 1 ? 8 : 0), end, want);
    }
    return -1;
}

/* A UDP payload at `at` to a tunnel port (decode._udp_tunnel): the inner IP header (>= 0),
 * -1 (a tunnel this does not open: the decoder's), -2 (not a tunnel header: an ordinary
 * datagram) */
static int64_t udp_inner(const uint8_t *a, uint32_t sport, uint32_t dport, int64_t at,
                         int64_t end, int *want) {
    if (dport == 4789) {                               /* VXLAN */
        if (at + 8 > end || !(a[at] & 0x08))
            return -2;
        return tunnel_ether(a, at + 8, end, want);
    }
    if (dport == 6081) {                               /* Geneve */
        if (at + 8 > end || (a[at] >> 6) != 0)
            return -2;
        int64_t st = at + 8 + (int64_t)(a[at] & 0x3F) * 4;
        uint32_t pt = rd16(a + at + 2);
        if (pt == 0x6558)
            return tunnel_ether(a, st, end, want);
        if (pt == 0x0800 || pt == 0x86DD)
            return raw_ip(a, st, end, want);
        return -1;
    }
    if (dport != 2152 && sport != 2152)
        return -2;
    /* GTP-U: version 1, protocol type GTP, G-PDU */
    if (at + 8 > end || (a[at] >> 5) != 1 || !(a[at] & 0x10))
        return -2;
    if (a[at + 1] != 0xFF)
        return -1;
    int64_t st = at + 8;
    if (a[at] & 0x07) {
        if (st + 4 > end)
            return -1;
        int nxt = a[st + 3];
        st += 4;
        for (int hops = 0; nxt; hops++) {
            if (st + 4 > end || a[st] == 0 || hops >= 8)
                return -1;
            st += (int64_t)a[st] * 4;
            if (st > end)
                return -1;
            nxt = a[st - 1];
        }
    }
    return raw_ip(a, st, end, want);
}

static PyObject *parse_headers(PyObject *self, PyObject *args) {
    Py_buffer b, vo, vi, vl;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &b, &vo, &vi, &vl))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = vo.len / 8;
    if (as_i64(&vo, n, "offs") < 0 || as_i64(&vi, n, "incl") < 0 || as_i64(&vl, n, "linktype") < 0)
        goto done;
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)NCOL * n * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL)
        goto done;
    int64_t *col = (int64_t *)PyBytes_AS_STRING(out);
    memset(col, 0, (size_t)NCOL * (size_t)n * sizeof(int64_t));
    const uint8_t *a = (const uint8_t *)b.buf;
    const int64_t *offs = (const int64_t *)vo.buf, *incl = (const int64_t *)vi.buf;
    const int64_t *lts = (const int64_t *)vl.buf;
    const int64_t L = b.len;
#define COL(c) col[(Py_ssize_t)(c) * n + i]
    for (Py_ssize_t i = 0; i < n; i++) {
        /* the records of a block are spread over more memory than the caches hold: ask
         * for the headers a few records ahead while this one is decoded */
        if (i + 8 < n && offs[i + 8] >= 0 && offs[i + 8] < L)
            PREFETCH(a + offs[i + 8]);
        int64_t base = offs[i], len = incl[i], lt = lts[i];
        if (base < 0 || len < 0 || base > L)
            continue;
        int64_t cap_end = base + len;
        if (cap_end > L)
            cap_end = L;
        int want = 0;
        int64_t ip;
        if (lt == 1 || lt == 104 || lt == 113 || lt == 276) {
            /* an EtherType at et, the payload at hl (decode._ETHERTYPE_AT): Ethernet, Cisco
             * HDLC, Linux cooked captures v1 and v2 (tcpdump -i any) */
            int64_t et = lt == 1 ? 12 : lt == 104 ? 2 : lt == 113 ? 14 : 0;
            int64_t hl = lt == 1 ? 14 : lt == 104 ? 4 : lt == 113 ? 16 : 20;
            if (base + hl > cap_end)
                continue;
            ip = ether_ip(a, base + et, base + hl, cap_end, &want, 0);
        } else if (lt == 9 || lt == 50) {              /* PPP (decode._ppp) */
            int64_t p = base;
            if (p + 2 <= cap_end && a[p] == 0xFF && a[p + 1] == 0x03)
                p += 2;
            uint32_t proto;
            if (p + 1 <= cap_end && (a[p] & 1)) {
                proto = a[p];
                p += 1;
            } else if (p + 2 <= cap_end) {
                proto = rd16(a + p);
                p += 2;
            } else {
                continue;
            }
            want = ppp_ip(proto);
            if (!want)
                continue;
            ip = p;
        } else if (lt == 0 || lt == 108) {             /* BSD loopback (decode.link_to_ip) */
            if (base + 4 > cap_end)
                continue;
            uint32_t be = rd32(a + base), le = rd32_order(a + base, 0);
            /* NULL: the capturing host's byte order; LOOP: network order */
            uint32_t fam = lt == 108 ? be : (le < 256 ? le : be);
            if (fam == 2)
                want = 4;
            else if (fam == 24 || fam == 28 || fam == 30 || fam == 10)   /* AF_INET6: BSDs, macOS, Linux */
                want = 6;
            else
                continue;
            ip = base + 4;
        } else if (lt == 51) {                         /* PPPoE without Ethernet */
            ip = pppoe_ip(a, base, cap_end, &want);
        } else if (lt == 101 || lt == 12 || lt == 14 || lt == 228 || lt == 229) {
            ip = base;
        } else {
            continue;
        }
        /* the packet, or the packet inside each tunnel in turn (bound: where the carrier ends) */
        int64_t bound = cap_end;
        for (int depth = 0;; depth++) {
            if (ip < 0 || ip + 20 > bound)
                goto next;
            const uint8_t *h = a + ip;
            int ver = h[0] >> 4;
            int v4 = ver == 4 && (want == 0 || want == 4);
            int v6 = ver == 6 && (want == 0 || want == 6) && ip + 40 <= bound;
            int64_t ihl = (int64_t)(h[0] & 15) * 4;
            int64_t tot = rd16(h + 2);
            if (v4 && !(ihl >= 20 && ip + ihl <= bound && (rd16(h + 6) & 0x3FFF) == 0
                        && (tot == 0 || tot >= ihl)))
                v4 = 0;
            if (!v4 && !v6)
                goto next;
            int proto = v6 ? h[6] : h[9];
            int64_t declared;
            if (v6) {
                int64_t plen6 = rd16(h + 4);
                declared = plen6 > 0 ? ip + 40 + plen6 : bound;
            } else {
                declared = tot >= ihl ? ip + tot : bound;
            }
            int64_t end = declared < bound ? declared : bound;
            int64_t l4 = ip + (v6 ? 40 : ihl);
            if (proto == 4 || proto == 41 || proto == 47) {
                if (depth >= MAX_ENCAP)
                    goto next;
                ip = proto == 47 ? gre_inner(a, l4, end, &want) : l4;
                if (proto != 47)
                    want = 0;
                bound = end;
                continue;
            }
            if (proto != 6 && proto != 17)
                goto next;
            int tcp = proto == 6;
            int64_t doff = 0;
            if (tcp) {
                if (l4 + 20 > end)
                    goto next;
                doff = (int64_t)(a[l4 + 12] >> 4) * 4;
                if (doff < 20 || l4 + doff > end)
                    goto next;
            } else if (l4 + 8 > end) {
                goto next;
            }
            uint32_t sport = rd16(a + l4), dport = rd16(a + l4 + 2);
            if (!tcp && (dport == 4789 || dport == 6081 || dport == 2152 || sport == 2152)) {
                int64_t inner = udp_inner(a, sport, dport, l4 + 8, end, &want);
                if (inner != -2) {
                    if (depth >= MAX_ENCAP)
                        goto next;
                    ip = inner;
                    bound = end;
                    continue;
                }
            }
            int64_t src_at = v6 ? ip + 8 : ip + 12, dst_at = v6 ? ip + 24 : ip + 16;
            int64_t pstart = l4 + (tcp ? doff : 8);
            int64_t plen = end - pstart;
            COL(C_OK) = 1;
            COL(C_V6) = v6;
            COL(C_TCP) = tcp;
            COL(C_ALEN) = v6 ? 16 : 4;
            COL(C_SRC_AT) = src_at;
            COL(C_DST_AT) = dst_at;
            COL(C_SPORT) = sport;
            COL(C_DPORT) = dport;
            COL(C_PSTART) = pstart;
            COL(C_PLEN) = plen > 0 ? plen : 0;
            COL(C_WIRELEN) = declared - ip;
            uint64_t ea = fold(a + src_at, v6) * K3 ^ sport;
            uint64_t eb = fold(a + dst_at, v6) * K3 ^ dport;
            uint64_t lo = ea < eb ? ea : eb, hi = ea < eb ? eb : ea;
            COL(C_EA) = (int64_t)ea;
            COL(C_H) = (int64_t)(lo * K1 ^ hi * K2);
            uint64_t seq = 0, ack = 0, flags = 0;
            if (tcp) {
                COL(C_MISSING) = declared - end;
                flags = a[l4 + 13];
                seq = rd32(a + l4 + 4);
                ack = rd32(a + l4 + 8);
                COL(C_FLAGS) = (int64_t)flags;
                COL(C_SEQ) = (int64_t)seq;
            }
            /* the duplicate key (poolsniff.dedup.dup_key, the reference; 0: none) */
            uint64_t ident = v6 ? (rd32(h) & 0xFFFFF) : rd16(h + 4);
            if (tcp && (plen > 0 || declared > end || (ident && !v6))) {
                uint64_t csum = rd16(a + l4 + 16);
                uint64_t w1 = ident << 24 | (uint64_t)(declared - ip);
                uint64_t w2 = seq << 32 | ack, w3 = csum << 8 | flags;
                COL(C_DUPKEY) = (int64_t)(ea * K1 ^ eb * K2 ^ w1 * K3 ^ w2 * K4 ^ w3 * K5);
            }
            break;
        }
    next:;
    }
#undef COL
done:
    PyBuffer_Release(&b);
    PyBuffer_Release(&vo);
    PyBuffer_Release(&vi);
    PyBuffer_Release(&vl);
    return out;
}

/* ---- DNS (the same answers as poolsniff.protocols.parse_dns_py, which stays the reference) */

#define DNS_MAX_NAME 255
#define DNS_MAX_RRS 64

/* A (possibly compressed) name at *off: a new str (labels lowercased, bytes past ASCII as
 * U+FFFD, joined by '.'), *off moved past it; NULL with no exception when it is malformed
 * (*off then unchanged in meaning: the caller stops). */
static PyObject *dns_name(const uint8_t *b, Py_ssize_t n, Py_ssize_t *poff) {
    char out[DNS_MAX_NAME * 3 + 64];
    Py_ssize_t o = 0, off = *poff, end = -1;
    int jumps = 0, total = 0, first = 1;
    for (;;) {
        if (off >= n)
            return NULL;
        uint8_t ln = b[off];
        if (ln == 0) {
            off += 1;
            break;
        }
        if ((ln & 0xC0) == 0xC0) {
            if (off + 1 >= n)
                return NULL;
            Py_ssize_t ptr = ((Py_ssize_t)(ln & 0x3F) << 8) | b[off + 1];
            if (end < 0)
                end = off + 2;
            if (ptr >= off || jumps > 16)       /* pointers must point backwards */
                return NULL;
            off = ptr;
            jumps++;
            continue;
        }
        if (ln & 0xC0)
            return NULL;
        if (off + 1 + ln > n)
            return NULL;
        total += ln + 1;
        if (total > DNS_MAX_NAME)
            return NULL;
        if (!first)
            out[o++] = '.';
        first = 0;
        for (int i = 0; i < ln; i++) {
            uint8_t c = b[off + 1 + i];
            if (c >= 0x80) {                    /* decode("ascii", "replace") */
                out[o++] = (char)0xEF;
                out[o++] = (char)0xBF;
                out[o++] = (char)0xBD;
            } else {
                out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
        }
        off += 1 + ln;
    }
    *poff = end >= 0 ? end : off;
    return PyUnicode_DecodeUTF8(out, o, "strict");
}

static PyObject *parse_dns(PyObject *self, PyObject *args) {
    Py_buffer v;
    if (!PyArg_ParseTuple(args, "y*", &v))
        return NULL;
    const uint8_t *b = (const uint8_t *)v.buf;
    Py_ssize_t n = v.len;
    PyObject *qnames = NULL, *answers = NULL, *out = NULL;
    if (n < 12)
        goto none;
    unsigned flags = rd16(b + 2), qd = rd16(b + 4), an = rd16(b + 6);
    if ((flags & 0x7800) || qd > 4 || an > 256)
        goto none;                              /* an opcode other than QUERY, or not DNS */
    qnames = PyList_New(0);
    answers = PyList_New(0);
    if (qnames == NULL || answers == NULL)
        goto fail;
    Py_ssize_t off = 12;
    for (unsigned i = 0; i < qd; i++) {
        PyObject *name = dns_name(b, n, &off);
        if (name == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto none;
        }
        if (off + 4 > n) {
            Py_DECREF(name);
            goto none;
        }
        int r = PyList_Append(qnames, name);
        Py_DECREF(name);
        if (r < 0)
            goto fail;
        off += 4;
    }
    unsigned rrs = an < DNS_MAX_RRS ? an : DNS_MAX_RRS;
    for (unsigned i = 0; i < rrs; i++) {
        PyObject *name = dns_name(b, n, &off);
        if (name == NULL) {
            if (PyErr_Occurred())
                goto fail;
            break;
        }
        if (off + 10 > n) {
            Py_DECREF(name);
            break;
        }
        unsigned rtype = rd16(b + off), rdlen = rd16(b + off + 8);
        off += 10;
        Py_ssize_t rdata = off;
        off += rdlen;
        if (off > n) {
            Py_DECREF(name);
            break;
        }
        PyObject *value = NULL;
        if ((rtype == 1 && rdlen == 4) || (rtype == 28 && rdlen == 16)) {
            char text[INET6_ADDRSTRLEN];
            if (inet_ntop(rtype == 1 ? AF_INET : AF_INET6, b + rdata, text, sizeof text) == NULL) {
                Py_DECREF(name);
                PyErr_SetString(PyExc_OSError, "inet_ntop failed");
                goto fail;
            }
            value = PyUnicode_FromString(text);
        } else if (rtype == 5) {
            Py_ssize_t t = rdata;
            value = dns_name(b, n, &t);
            if (value == NULL && PyErr_Occurred()) {
                Py_DECREF(name);
                goto fail;
            }
            if (value != NULL && PyUnicode_GET_LENGTH(value) == 0)
                Py_CLEAR(value);                /* an empty target is no answer */
        }
        if (value == NULL) {
            Py_DECREF(name);
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        PyObject *rr = Py_BuildValue("(NIN)", name, rtype, value);
        if (rr == NULL || PyList_Append(answers, rr) < 0) {
            Py_XDECREF(rr);
            goto fail;
        }
        Py_DECREF(rr);
    }
    out = Py_BuildValue("(ONN)", (flags & 0x8000) ? Py_True : Py_False, qnames, answers);
    PyBuffer_Release(&v);
    return out;
none:
    Py_XDECREF(qnames);
    Py_XDECREF(answers);
    PyBuffer_Release(&v);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(qnames);
    Py_XDECREF(answers);
    PyBuffer_Release(&v);
    return NULL;
}

static PyMethodDef methods[] = {
    {"index_pcap", index_pcap, METH_VARARGS,
     "index_pcap(buf, pos, end, big_endian, limit, max_records, max_bytes) -> (rows, new_pos)\n\n"
     "The consecutive classic-pcap records from pos as n x 4 int64 (header position, captured\n"
     "length, timestamp seconds, timestamp fraction): stops before a record longer than\n"
     "limit or cut short by end, after max_records records, or once max_bytes have been\n"
     "passed."},
    {"index_pcapng", index_pcapng, METH_VARARGS,
     "index_pcapng(buf, pos, end, big_endian, n_ifaces, max_records, max_bytes, max_block)\n"
     "    -> (records, new_pos, unknown_blocks)\n\n"
     "The packet blocks of a pcapng section from pos as n x 4 int64 (data offset, captured\n"
     "length, timestamp ticks, interface or -1 for a simple packet block), stepping over\n"
     "blocks of unknown types; stops before a section or interface header, a block cut\n"
     "short by end, damage, after max_records records or once max_bytes have been passed."},
    {"parse_headers", parse_headers, METH_VARARGS,
     "parse_headers(buf, offs, incl, linktype) -> bytes of NCOL x n int64 columns\n\n"
     "L2-L4 header fields of every record of a block (see HEADER_COLUMNS in batch.py);\n"
     "a record the batch path does not take has ok = 0 and zeros elsewhere."},
    {"parse_dns", parse_dns, METH_VARARGS,
     "parse_dns(buf) -> None | (is_response, [question names], [(name, type, value)])\n\n"
     "A DNS message as poolsniff.protocols.parse_dns_py reads it (A, AAAA and CNAME answers)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath",
                                    "C loops of the batch path (see poolsniff/batch.py).", -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "NCOL", NCOL) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
