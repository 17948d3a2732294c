"""Minimal hand-built Kafka requests for tests that send bad input."""

import socket
import struct

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(v):
    v = (v << 1) ^ (v >> 63)
    out = b""
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def record_batch(values, timestamp=1_700_000_000_000, producer_id=-1, epoch=-1, base_sequence=-1, keys=None):
    """An uncompressed v2 record batch with a correct CRC (keys: one bytes
    or None per value; no keys by default)."""
    records = b""
    for i, value in enumerate(values):
        key = keys[i] if keys else None
        key_field = varint(-1) if key is None else varint(len(key)) + key
        body = b"\x00" + varint(i) + varint(i) + key_field + varint(len(value)) + value + varint(0)
        records += varint(len(body)) + body
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, timestamp, timestamp + n - 1, producer_id, epoch, base_sequence, n) + records
    crc = crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, batch_length, -1, 2, crc) + after_crc


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, correlation_id, body, client_id="raw-test"):
    header = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def produce_v3(topic, partition, records, acks=-1):
    body = struct.pack(">hhi", -1, acks, 10000)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">i", partition) + struct.pack(">i", len(records)) + records
    return body


def fetch_v4(topic, partition, offset, max_wait_ms=100):
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", partition, offset, 1 << 20)
    return body


def metadata_v1(topics):
    return struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def read_response(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def is_closed(sock):
    """True when the peer closes the connection (EOF or reset) in time."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def produce_v3_error(response):
    """The partition error code of a single-partition Produce v3 response."""
    return produce_v3_result(response)[0]


def fetch_v4_error(response):
    r = Reader(response)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    r.take(">i")
    return r.take(">h")


def metadata_v1_topic_errors(response):
    r = Reader(response)
    r.take(">i")
    for _ in range(r.take(">i")):
        r.take(">i")
        r.string()
        r.take(">i")
        r.string()
    r.take(">i")  # controller
    out = {}
    for _ in range(r.take(">i")):
        error = r.take(">h")
        name = r.string()
        r.take(">b")
        for _ in range(r.take(">i")):
            r.take(">hii")
            n = r.take(">i")
            r.pos += 4 * max(n, 0)
            n = r.take(">i")
            r.pos += 4 * max(n, 0)
        out[name] = error
    return out


def init_producer_id_v0():
    return string_nullable(None) + struct.pack(">i", 60000)


def string_nullable(s):
    return struct.pack(">h", -1) if s is None else string(s)


def init_producer_id_v0_result(response):
    r = Reader(response)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    return r.take(">h"), r.take(">q"), r.take(">h")


def produce_v3_result(response):
    """(error_code, base_offset) of a single-partition Produce v3 response."""
    r = Reader(response)
    r.take(">i")
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    r.take(">i")
    return r.take(">h"), r.take(">q")


def bytes_field(b):
    return struct.pack(">i", len(b)) + b


def join_group_v1(group, member_id, protocols, protocol_type="consumer", session_ms=10000):
    body = string(group) + struct.pack(">ii", session_ms, 10000) + string(member_id) + string(protocol_type)
    body += struct.pack(">i", len(protocols))
    for name, metadata in protocols:
        body += string(name) + bytes_field(metadata)
    return body


def heartbeat_v0(group, generation, member_id):
    return string(group) + struct.pack(">i", generation) + string(member_id)


def sync_group_v0(group, generation, member_id, assignments):
    body = string(group) + struct.pack(">i", generation) + string(member_id)
    body += struct.pack(">i", len(assignments))
    for mid, data in assignments:
        body += string(mid) + bytes_field(data)
    return body


def offset_commit_v2(group, generation, member_id, topic, partition, offset):
    body = string(group) + struct.pack(">i", generation) + string(member_id) + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iq", partition, offset) + string("")
    return body


def produce_v8_result(response):
    """(error_code, base_offset, [(batch_index, message)], error_message) of a
    single-partition Produce v8 response (request body as produce_v3)."""
    r = Reader(response)
    r.take(">i")
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    r.take(">i")
    error, base_offset = r.take(">h"), r.take(">q")
    r.take(">qq")  # log append time, log start offset
    record_errors = [(r.take(">i"), r.string()) for _ in range(r.take(">i"))]
    return error, base_offset, record_errors, r.string()
