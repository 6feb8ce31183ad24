#!/usr/bin/env python3
"""Decrypt the `encrypt` and `tokenize` fields of the pipeline's clean records
with Google's Tink (PyPI `tink`), for an authorised consumer: one that holds
the key-encryption key (PIPELINE_KEK_FILE) and may read privacy.keys.

A clean record names its data key in the header `pp-data-key`; the record of
that id on privacy.keys holds the wrapped key (JSON: v, id, created_ms, aead,
daead, the two keysets encrypted by the key-encryption key with
"pp-subject-key\\0" + id as associated data). A field value is "e1." (AES-256-GCM)
or "t1." (AES-256-SIV) + base64url, with "pp-field\\0" + the field path as
associated data. Once the subject is erased its key record is a tombstone and
nothing decrypts.

As a library:

    kek = load_kek("kek.json")
    key = unwrap(kek, wrapped_record_value)      # bytes from privacy.keys
    decrypt(key, "e1....", "email")              # -> b"jane@example.com"

As a command (one JSON object per value on stdout):

    decrypt.py --kek kek.json --wrapped key.json --field email e1.... [--field phone t1....]
"""
import argparse
import base64
import json
import sys

import tink
from tink import aead, daead, secret_key_access

aead.register()
daead.register()


def load_kek(path):
    """The key-encryption key: a Tink JSON keyset file (cleartext, mode 0600)."""
    with open(path, encoding="utf-8") as f:
        handle = tink.json_proto_keyset_format.parse(f.read(), secret_key_access.TOKEN)
    return handle.primitive(aead.Aead)


def unwrap(kek, wrapped):
    """A data key from its privacy.keys record value: (id, AEAD, DeterministicAEAD)."""
    doc = json.loads(wrapped)
    if doc.get("v") != 1:
        raise ValueError(f"wrapped key version {doc.get('v')!r}, this recipe reads 1")
    ad = b"pp-subject-key\x00" + doc["id"].encode()
    a = tink.proto_keyset_format.parse_encrypted(base64.b64decode(doc["aead"]), kek, ad)
    d = tink.proto_keyset_format.parse_encrypted(base64.b64decode(doc["daead"]), kek, ad)
    return doc["id"], a.primitive(aead.Aead), d.primitive(daead.DeterministicAead)


def decrypt(key, value, field):
    """The plaintext of an encrypt ("e1.") or tokenize ("t1.") value of field."""
    _, a, d = key
    prefix, body = value[:3], value[3:]
    ct = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    ad = b"pp-field\x00" + field.encode()
    if prefix == "e1.":
        return a.decrypt(ct, ad)
    if prefix == "t1.":
        return d.decrypt_deterministically(ct, ad)
    raise ValueError("not an encrypt or tokenize value")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kek", required=True, help="the key-encryption key file (PIPELINE_KEK_FILE)")
    ap.add_argument("--wrapped", required=True, help="a file holding the record value of the key on privacy.keys")
    ap.add_argument("--field", nargs=2, action="append", metavar=("FIELD", "VALUE"), required=True,
                    help="a field path and its e1./t1. value (repeatable)")
    args = ap.parse_args()
    kek = load_kek(args.kek)
    with open(args.wrapped, "rb") as f:
        key = unwrap(kek, f.read())
    for field, value in args.field:
        try:
            plain = decrypt(key, value, field).decode("utf-8")
            print(json.dumps({"field": field, "plaintext": plain}))
        except Exception as e:  # a wrong field, a shredded or foreign key: say so, print no value
            print(json.dumps({"field": field, "error": type(e).__name__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
