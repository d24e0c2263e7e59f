/*
 * poolsniff._fastpath: the two per-record loops of the batch path, in C.
 *
 *   index_pcap(buf, pos, end, big_endian, limit, max_records, max_bytes)
 *       -> (starts: bytes of int64, new_pos)
 *   parse_headers(buf, offs, incl, linktype) -> bytes of NCOL x n int64 columns
 *   parse_dns(buf) -> None | (is_response, [question names], [(name, type, value)])
 *
 * They compute exactly what the numpy code in poolsniff/batch.py and
 * poolsniff/sources/pcapfile.py computes (that code stays as the fallback and
 * tests/test_fastpath_c.py compares the two on every capture and on random bytes).
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
    C_MISSING, C_WIRELEN, C_FLAGS, C_SEQ, C_EA, C_H, NCOL
};

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)0)
#endif

static const uint64_t K1 = 0x9E3779B97F4A7C15ULL;
static const uint64_t K2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t K3 = 0x165667B19E3779F9ULL;

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

static PyObject *index_pcap(PyObject *self, PyObject *args) {
    Py_buffer b;
    Py_ssize_t pos, end, limit, max_records, max_bytes;
    int big;
    if (!PyArg_ParseTuple(args, "y*nnpnnn", &b, &pos, &end, &big, &limit, &max_records, &max_bytes))
        return NULL;
    if (end > b.len)
        end = b.len;
    if (pos < 0 || max_records < 0) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "negative position or count");
        return NULL;
    }
    const uint8_t *a = (const uint8_t *)b.buf;
    /* one pass (a block is larger than the caches: a second walk missed them again); the
     * positions go to a buffer that doubles, then to a bytes object of the exact size */
    Py_ssize_t cap = pos + max_bytes, p = pos, k = 0, room = 4096;
    int nomem = 0;
    int64_t *st = (int64_t *)PyMem_RawMalloc((size_t)room * sizeof(int64_t));
    if (st == NULL) {
        PyBuffer_Release(&b);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    while (p + 16 <= end && k < max_records && p < cap) {
        uint32_t incl = rd32_order(a + p + 8, big);
        if ((Py_ssize_t)incl > limit || p + 16 + (Py_ssize_t)incl > end)
            break;
        if (k == room) {
            int64_t *more = (int64_t *)PyMem_RawRealloc(st, (size_t)room * 2 * sizeof(int64_t));
            if (more == NULL) {
                nomem = 1;
                break;
            }
            st = more;
            room *= 2;
        }
        st[k++] = p;
        p += 16 + (Py_ssize_t)incl;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    if (nomem) {
        PyMem_RawFree(st);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)st, k * (Py_ssize_t)sizeof(int64_t));
    PyMem_RawFree(st);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nn)", out, p);
}

static int as_i64(Py_buffer *v, Py_ssize_t n, const char *what) {
    if (v->itemsize != 8 || v->len != n * 8) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd int64 values", what, n);
        return -1;
    }
    return 0;
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
        int eth = lt == 1;
        int raw = lt == 101 || lt == 12 || lt == 14 || lt == 228 || lt == 229;
        if (!eth && !raw)
            continue;
        int64_t ip = eth ? base + 14 : base;
        uint32_t et = 0;
        if (eth) {
            if (base + 14 > cap_end)
                continue;
            et = rd16(a + base + 12);
            for (int t = 0; t < 2; t++) {      /* up to two VLAN tags (QinQ) */
                if ((et == 0x8100 || et == 0x88A8 || et == 0x9100 || et == 0x9200) && ip + 4 <= cap_end) {
                    et = rd16(a + ip + 2);
                    ip += 4;
                }
            }
        }
        if (ip + 20 > cap_end)
            continue;
        const uint8_t *h = a + ip;
        int ver = h[0] >> 4;
        int v4 = ver == 4 && ((eth && et == 0x0800) || raw);
        int v6 = ver == 6 && ((eth && et == 0x86DD) || raw) && ip + 40 <= cap_end;
        int64_t ihl = (int64_t)(h[0] & 15) * 4;
        int64_t tot = rd16(h + 2);
        if (v4 && !(ihl >= 20 && ip + ihl <= cap_end && (rd16(h + 6) & 0x3FFF) == 0
                    && (tot == 0 || tot >= ihl)))
            v4 = 0;
        if (!v4 && !v6)
            continue;
        int proto = v6 ? h[6] : h[9];
        if (proto != 6 && proto != 17)
            continue;
        int64_t declared;
        if (v6) {
            int64_t plen6 = rd16(h + 4);
            declared = plen6 > 0 ? ip + 40 + plen6 : cap_end;
        } else {
            declared = tot >= ihl ? ip + tot : cap_end;
        }
        int64_t end = declared < cap_end ? declared : cap_end;
        int64_t l4 = ip + (v6 ? 40 : ihl);
        int tcp = proto == 6;
        int64_t doff = 0;
        if (tcp) {
            if (l4 + 20 > end)
                continue;
            doff = (int64_t)(a[l4 + 12] >> 4) * 4;
            if (doff < 20 || l4 + doff > end)
                continue;
        } else if (l4 + 8 > end) {
            continue;
        }
        int64_t src_at = v6 ? ip + 8 : ip + 12, dst_at = v6 ? ip + 24 : ip + 16;
        uint32_t sport = rd16(a + l4), dport = rd16(a + l4 + 2);
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
        if (tcp) {
            COL(C_MISSING) = declared - end;
            COL(C_FLAGS) = a[l4 + 13];
            COL(C_SEQ) = rd32(a + l4 + 4);
        }
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
     "index_pcap(buf, pos, end, big_endian, limit, max_records, max_bytes) -> (starts, new_pos)\n\n"
     "Positions (int64 bytes) of consecutive classic-pcap record headers from pos: stops before\n"
     "a record longer than limit or cut short by end, after max_records records, or once\n"
     "max_bytes have been passed."},
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
