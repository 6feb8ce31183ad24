#!/usr/bin/env python3
"""scripts/avro-fingerprints.py [--canonical] SCHEMA.avsc... - fastavro's view of Avro schemas.

Prints one line per schema file: its path and the CRC-64-AVRO (Rabin)
fingerprint of its Parsing Canonical Form as a 64-bit value in 16 hex
digits (0x5643... prints as 5643..., not byte-swapped), as fastavro
computes them (fastavro.schema.to_parsing_canonical_form and
fastavro.schema.fingerprint(..., "CRC-64-AVRO")). With --canonical, a third
column holds the canonical form itself. Columns are separated by one space;
paths must not contain whitespace.

The pipeline's Go fingerprints (internal/codec/avroschema) are compared with
these by a Go test when PIPELINE_PYTHON names a python with fastavro
(scripts/pyenv makes one). Exit status 1 if any file cannot be read or parsed.
"""
import json
import sys

import fastavro.schema


def main(argv):
    canonical = False
    if argv and argv[0] == "--canonical":
        canonical, argv = True, argv[1:]
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    status = 0
    for path in argv:
        try:
            with open(path, encoding="utf-8") as f:
                schema = json.load(f)
            pcf = fastavro.schema.to_parsing_canonical_form(schema)
            fp = fastavro.schema.fingerprint(pcf, "CRC-64-AVRO")
        except Exception as e:  # report every file, then fail
            print(f"{path}: {e}", file=sys.stderr)
            status = 1
            continue
        # fastavro returns the fingerprint's bytes in little-endian order (as
        # in the single-object header); print the 64-bit value, as Go's %016x
        # and the pp-schema header do.
        value = int.from_bytes(bytes.fromhex(fp), "little")
        line = f"{path} {value:016x}"
        if canonical:
            line += " " + pcf
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
