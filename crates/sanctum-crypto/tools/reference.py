#!/usr/bin/env python3
"""Independent reference implementation of the sanctum envelope (suites 0x0001 and 0x0003).

Written from docs/encryption.md only (no Rust), using the `cryptography`
package, and for suite 0x0003 the `blake3` package (the official bindings).
Regenerates the published test vectors of both suites and decrypts them again:

    pip install cryptography blake3
    python3 crates/sanctum-crypto/tools/reference.py
"""
import hashlib
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

CHUNK = 16384
TAG = 16


BLAKE3_CONTEXT = "sanctum-storage 2026-11-29 envelope suite 0x0003 message key"


def header_prefix(suite: int, key_id: bytes, epoch: int) -> bytes:
    header_len = 11 + len(key_id) + 4 + 24 + 32
    return (b"SNC1" + bytes([1]) + struct.pack(">H", suite) + bytes([0])
            + struct.pack(">H", header_len) + bytes([len(key_id)]) + key_id
            + struct.pack(">I", epoch))


def context(tenant, namespace, key, body_id, kind, prefix: bytes) -> bytes:
    out = b""
    for f in [b"sanctum-storage/v1", tenant, namespace, key, body_id, kind, prefix]:
        out += struct.pack(">I", len(f)) + f
    return out


def derive(suite: int, input_key: bytes, salt: bytes, ctx: bytes):
    if suite == 1:
        info = b"c2sp.org/chunked-encryption@v1+" + b"AEAD_AES_256_GCM" + b"\x00" + salt + ctx
        okm = HKDFExpand(algorithm=hashes.SHA512(), length=76, info=info).derive(input_key)
    elif suite == 3:
        import blake3
        okm = blake3.blake3(input_key + salt + ctx, derive_key_context=BLAKE3_CONTEXT).digest(length=76)
    else:
        raise ValueError("unsupported suite")
    return okm[:32], okm[32:44], okm[44:76]


def nonce(base: bytes, i: int) -> bytes:
    return bytes(a ^ b for a, b in zip(base, i.to_bytes(12, "big")))


def encrypt(suite, input_key, salt, key_id, epoch, ctx_fields, plaintext: bytes) -> bytes:
    prefix = header_prefix(suite, key_id, epoch)
    key, base, commitment = derive(suite, input_key, salt, context(*ctx_fields, prefix))
    aead = AESGCM(key)
    out = prefix + salt + commitment
    i = 0
    while True:
        chunk = plaintext[i * CHUNK:(i + 1) * CHUNK]
        out += aead.encrypt(nonce(base, i), chunk, None)
        if len(chunk) < CHUNK:
            return out
        i += 1


def decrypt(input_key, ctx_fields, message: bytes) -> bytes:
    key_id_len = message[10]
    header_len = 71 + key_id_len
    assert struct.unpack(">H", message[8:10])[0] == header_len
    prefix = message[:header_len - 56]
    salt = message[header_len - 56:header_len - 32]
    commitment = message[header_len - 32:header_len]
    suite = struct.unpack(">H", message[5:7])[0]
    key, base, want = derive(suite, input_key, salt, context(*ctx_fields, prefix))
    assert want == commitment, "commitment"
    body = message[header_len:]
    assert len(body) % (CHUNK + TAG) >= TAG, "truncated"
    aead = AESGCM(key)
    out = b""
    for i in range(0, len(body) // (CHUNK + TAG) + 1):
        out += aead.decrypt(nonce(base, i), body[i * (CHUNK + TAG):(i + 1) * (CHUNK + TAG)], None)
    return out


if __name__ == "__main__":
    input_key = bytes(range(32))
    salt = bytes(range(100, 124))
    ctx = (b"acme", b"docs", b"a/b.txt", b"01j0000000000000000000000", b"blob-body")
    for suite in [1, 3]:
        print(f"suite 0x{suite:04x}")
        prefix = header_prefix(suite, b"ns-docs", 1)
        key, base, commitment = derive(suite, input_key, salt, context(*ctx, prefix))
        print("key", key.hex(), "base_nonce", base.hex(), "commitment", commitment.hex())
        for n in [0, 1, 16383, 16384, 16385, 100000]:
            pt = bytes(i % 251 for i in range(n))
            m = encrypt(suite, input_key, salt, b"ns-docs", 1, ctx, pt)
            assert decrypt(input_key, ctx, m) == pt
            print(n, len(m), hashlib.sha256(m).hexdigest())
            if n == 1:
                print(m.hex())
