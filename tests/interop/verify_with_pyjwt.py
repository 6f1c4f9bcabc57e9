#!/usr/bin/env python3
"""Interop check: a stock JOSE library (PyJWT + cryptography) verifies Tessera license files.

Usage:
    verify_with_pyjwt.py VECTORS_DIR [LICENSE_FILE PUBLIC_KEY_PEM]

Checks the test vectors in VECTORS_DIR (see docs/license-format.md) and, if given, one more license
file issued by the `tessera` binary. Uses nothing of Tessera's: only the format as documented.
Prints one line per check and a closing "N passed, N failed" line; exits non-zero on any failure.
"""
import base64
import hashlib
import json
import sys
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

LICENSE_TYP = "tessera-license+jwt"
passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # report and go on: every check is independent
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    else:
        passed += 1
        print(f"ok   {name}")


def dearmour(text, label="TESSERA LICENSE"):
    """The documented armour: the lines between BEGIN and END, white space removed."""
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    lines = [l.strip() for l in text.splitlines()]
    start = lines.index(begin)
    stop = lines.index(end, start + 1)
    return "".join(lines[start + 1 : stop])


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_key):
    """RFC 7638 JWK thumbprint of an Ed25519 key: the documented key id."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    x = b64url(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def decode(token, key):
    return jwt.decode(
        token,
        key,
        algorithms=["EdDSA"],
        options={"require": ["iat", "jti", "sub"], "verify_aud": False},
    )


def verify_license(path, key):
    token = dearmour(Path(path).read_text())
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA", header
    assert header["typ"] == LICENSE_TYP, header
    assert header["kid"] == thumbprint(key), f"kid {header['kid']} is not the key's RFC 7638 thumbprint"
    return header, decode(token, key)


def main():
    vectors = Path(sys.argv[1])
    key = load_pem_public_key((vectors / "producer.pub").read_bytes())

    def vector_license():
        header, claims = verify_license(vectors / "license.lic", key)
        expected = json.loads((vectors / "license.claims.json").read_text())
        assert claims == expected, f"claims differ:\n{claims}\n!=\n{expected}"
        assert header == json.loads((vectors / "license.header.json").read_text())

    def bare_token():
        decode((vectors / "license.token").read_text().strip(), key)

    def tampered_is_refused():
        token = dearmour((vectors / "tampered.lic").read_text())
        try:
            decode(token, key)
        except jwt.InvalidSignatureError:
            return
        raise AssertionError("a tampered license verified")

    def expired_is_refused():
        token = dearmour((vectors / "expired.lic").read_text())
        try:
            decode(token, key)
        except jwt.ExpiredSignatureError:
            return
        raise AssertionError("an expired license verified")

    def wrong_key_is_refused():
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        other = Ed25519PrivateKey.generate().public_key()
        token = dearmour((vectors / "license.lic").read_text())
        try:
            decode(token, other)
        except jwt.InvalidSignatureError:
            return
        raise AssertionError("verified with another key")

    check("vector license verifies and its claims match license.claims.json", vector_license)
    check("bare token verifies", bare_token)
    check("tampered license is refused", tampered_is_refused)
    check("expired license is refused", expired_is_refused)
    check("another key is refused", wrong_key_is_refused)

    if len(sys.argv) == 4:
        lic, pub = sys.argv[2], sys.argv[3]
        issued_key = load_pem_public_key(Path(pub).read_bytes())

        def issued_license():
            _, claims = verify_license(lic, issued_key)
            assert claims["features"], "no features"

        check(f"license issued by tessera ({lic}) verifies", issued_license)

    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
