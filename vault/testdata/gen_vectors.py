"""Independent reference for vault/testdata/envelope-v1.json.

Builds Warden v1 envelopes with pyca/cryptography (OpenSSL), not with
Warden's own code, so the Rust test checks our format against a second
implementation. Run: python3 vault/testdata/gen_vectors.py > vault/testdata/envelope-v1.json
"""
import json
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def aad(term, context):
    out = bytes([1]) + struct.pack(">I", term)
    for field in context:
        out += struct.pack(">I", len(field)) + field
    return out


def envelope(key, term, nonce, context, plaintext):
    ct = AESGCM(key).encrypt(nonce, plaintext, aad(term, context))
    return bytes([1]) + struct.pack(">I", term) + nonce + ct


def secret_context(org, scope, name, version):
    return [org.encode(), scope.encode(), name.encode(), struct.pack(">Q", version)]


vectors = []
key = bytes(range(32))
nonce = bytes(range(0xA0, 0xAC))
ctx = ("acme", "acme/shop/prod", "DATABASE_URL", 3)
pt = b"postgres://u:p@db/shop"
vectors.append({
    "name": "raw key, secret context",
    "key": key.hex(), "hkdf_salt": None, "hkdf_info": None,
    "term": 7, "nonce": nonce.hex(),
    "context": {"org": ctx[0], "scope": ctx[1], "name": ctx[2], "version": ctx[3]},
    "plaintext": pt.decode(),
    "envelope": envelope(key, 7, nonce, secret_context(*ctx), pt).hex(),
})
salt = bytes([0x55]) * 32
info = b"warden/secret/v1"
derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)
ctx2 = ("acme", "acme/shop", "EMPTY", 1)
vectors.append({
    "name": "hkdf purpose key, empty value",
    "key": key.hex(), "hkdf_salt": salt.hex(), "hkdf_info": info.decode(),
    "term": 1, "nonce": nonce.hex(),
    "context": {"org": ctx2[0], "scope": ctx2[1], "name": ctx2[2], "version": ctx2[3]},
    "plaintext": "",
    "envelope": envelope(derived, 1, nonce, secret_context(*ctx2), b"").hex(),
})
ctx3 = ("acme", "acme/shop/prod/api", "TLS_KEY", 42)
pt3 = "ünïcødé ✓ multi\nline".encode()
vectors.append({
    "name": "hkdf purpose key, utf-8 multi-line",
    "key": key.hex(), "hkdf_salt": salt.hex(), "hkdf_info": info.decode(),
    "term": 4294967295, "nonce": nonce.hex(),
    "context": {"org": ctx3[0], "scope": ctx3[1], "name": ctx3[2], "version": ctx3[3]},
    "plaintext": pt3.decode(),
    "envelope": envelope(derived, 4294967295, nonce, secret_context(*ctx3), pt3).hex(),
})
print(json.dumps(vectors, indent=2, ensure_ascii=False))
