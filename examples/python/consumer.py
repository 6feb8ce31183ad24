#!/usr/bin/env python3
"""Read Confluent-framed Avro records from a pipeline topic and print them as JSON.

The pipeline's output topics (clean.<purpose>.customer-events,
agg.analytics.<name>, clean.ai_training.kanon) carry the Confluent Schema
Registry wire format: magic byte 0, a 4-byte big-endian schema id, then the
Avro binary body. This example decodes each record with the writer schema that
the id names in the registry (confluent-kafka's AvroDeserializer fetches and
caches it) and prints one JSON object per record on stdout:

    {"topic": ..., "partition": ..., "offset": ...,
     "key": "<utf-8 key>" (or null, plus "key_b64" when the key is not UTF-8),
     "headers": {"name": "<utf-8 value>", ...},
     "value": {...the decoded record...}}

Values are made JSON-safe: timestamps (timestamp-millis, timestamp-micros)
become epoch milliseconds, dates days since 1970-01-01, times of day
milliseconds since midnight, bytes and fixed base64 strings, decimals strings,
UUIDs strings. examples/consumer (Go) prints the same shape.

It reads committed records only (isolation.level=read_committed), from the
earliest offset, in a fresh consumer group unless --group is given, and stops
after --max records or when nothing arrived for --idle-timeout seconds (counted
from the last record, or from the partition assignment before the first).
Progress and errors go to stderr; it exits non-zero on any error (a record
that cannot be decoded included).

    python examples/python/consumer.py --bootstrap 127.0.0.1:19092 \\
        --registry http://127.0.0.1:18081/apis/ccompat/v7 \\
        --topic clean.analytics.customer-events --max 10

The registry password is read from --registry-password or, better (it then
stays out of the process list), the environment variable
SCHEMA_REGISTRY_PASSWORD; it is never printed.

Needs confluent-kafka[avro] (scripts/pyenv installs the pinned version).
"""

import argparse
import base64
import datetime
import decimal
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_EPOCH_DATE = datetime.date(1970, 1, 1)
_MS = datetime.timedelta(milliseconds=1)


def log(msg):
    print(f"consumer.py: {msg}", file=sys.stderr, flush=True)


def json_safe(v):
    """Turns a value decoded by fastavro into one json.dumps accepts."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, datetime.datetime):  # before date: datetime is a date
        if v.tzinfo is None:  # local-timestamp-*: wall clock, read as UTC
            v = v.replace(tzinfo=datetime.timezone.utc)
        return (v - _EPOCH) // _MS
    if isinstance(v, datetime.date):
        return (v - _EPOCH_DATE).days
    if isinstance(v, datetime.time):
        return ((v.hour * 60 + v.minute) * 60 + v.second) * 1000 + v.microsecond // 1000
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, decimal.Decimal):
        return format(v, "f")  # positional, never 1E-8
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def key_fields(key):
    """The output's key fields: UTF-8 text, or base64 when it is not text."""
    if key is None:
        return {"key": None}
    try:
        return {"key": key.decode("utf-8")}
    except UnicodeDecodeError:
        return {"key": None, "key_b64": base64.b64encode(key).decode("ascii")}


def parse_args(argv):
    p = argparse.ArgumentParser(description="Consume Confluent-framed Avro records and print them as JSON lines.")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port[,host:port]")
    p.add_argument("--registry", required=True, help="schema registry URL (Confluent API), e.g. http://127.0.0.1:18081/apis/ccompat/v7")
    p.add_argument("--topic", required=True, help="topic to read")
    p.add_argument("--group", default=None, help="consumer group (default: a fresh random one, so it reads from the start)")
    p.add_argument("--max", type=int, default=0, help="stop after this many records (default 0: no limit)")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="stop when nothing arrived for this many seconds (default 10)")
    p.add_argument("--registry-user", default=None, help="registry basic-auth user")
    p.add_argument("--registry-password", default=None, help="registry basic-auth password (default: $SCHEMA_REGISTRY_PASSWORD)")
    p.add_argument("--security-protocol", default=None, help="Kafka security.protocol (PLAINTEXT, SSL; default SSL when --ca-file is given)")
    p.add_argument("--ca-file", default=None, help="PEM CA bundle to verify the brokers and the registry")
    p.add_argument("--cert-file", default=None, help="PEM client certificate (mutual TLS) for the brokers and the registry")
    p.add_argument("--key-file", default=None, help="PEM client key for --cert-file")
    return p.parse_args(argv)


def registry_conf(a):
    conf = {"url": a.registry}
    password = a.registry_password if a.registry_password is not None else os.environ.get("SCHEMA_REGISTRY_PASSWORD")
    if a.registry_user:
        conf["basic.auth.user.info"] = f"{a.registry_user}:{password or ''}"
    if a.ca_file:
        conf["ssl.ca.location"] = a.ca_file
    if a.cert_file:
        conf["ssl.certificate.location"] = a.cert_file
    if a.key_file:
        conf["ssl.key.location"] = a.key_file
    return conf


def kafka_conf(a, group):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    }
    protocol = a.security_protocol or ("SSL" if a.ca_file or a.cert_file else None)
    if protocol:
        conf["security.protocol"] = protocol
    if a.ca_file:
        conf["ssl.ca.location"] = a.ca_file
    if a.cert_file:
        conf["ssl.certificate.location"] = a.cert_file
    if a.key_file:
        conf["ssl.key.location"] = a.key_file
    return conf


def main(argv=None):
    a = parse_args(argv)
    group = a.group or f"example-consumer-py-{uuid.uuid4().hex[:12]}"
    deserialize = AvroDeserializer(SchemaRegistryClient(registry_conf(a)))
    consumer = Consumer(kafka_conf(a, group))
    n, last = 0, time.monotonic()

    def on_assign(c, partitions):
        # The idle timeout counts from the last record or, before the first,
        # from when the group assigned the partitions (joining takes seconds).
        nonlocal last
        last = time.monotonic()

    consumer.subscribe([a.topic], on_assign=on_assign)
    log(f"reading {a.topic} (group {group}, read_committed)")
    try:
        while a.max <= 0 or n < a.max:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last >= a.idle_timeout:
                    log(f"nothing for {a.idle_timeout:g}s, stopping")
                    break
                continue
            if msg.error():
                raise KafkaException(msg.error())
            last = time.monotonic()
            headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
            ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
            try:
                value = deserialize(msg.value(), ctx)
            except Exception as e:
                raise RuntimeError(f"{msg.topic()}/{msg.partition()}@{msg.offset()}: cannot decode the value: {e}") from e
            out = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
            out.update(key_fields(msg.key()))
            out["headers"] = headers
            out["value"] = json_safe(value)
            print(json.dumps(out, ensure_ascii=False), flush=True)
            n += 1
    except (KafkaException, RuntimeError) as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    log(f"read {n} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
