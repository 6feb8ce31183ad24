#!/usr/bin/env python3
"""Publish raw customer events to the pipeline, Confluent-framed Avro.

Each record value is magic byte 0, the 4-byte big-endian schema id, then the
Avro binary body, written with the checked-in raw schema
schemas/customer_event.avsc (override with --schema). confluent-kafka's
AvroSerializer registers the schema under the TopicNameStrategy subject
<topic>-value on first use. Records are keyed by subject_id.

Either generate --count events (subject ids "<--subject-prefix>-<i>",
reproducible with --seed):

    python examples/python/producer.py --bootstrap 127.0.0.1:19092 \\
        --registry http://127.0.0.1:18081/apis/ccompat/v7 --count 10

or publish the events of a JSON-lines file as given (--events FILE, "-" for
stdin). In such a file event_time (timestamp-millis) may be epoch
milliseconds or an ISO 8601 string, birth_date (date) days since 1970-01-01 or
"YYYY-MM-DD"; unions take the plain value (fastavro's convention).

Prints one JSON line per produced event on stdout:
{"event_id", "subject_id", "partition", "offset"}; progress and errors go to
stderr, and it exits non-zero when any record was not delivered.

The registry password is read from --registry-password or the environment
variable SCHEMA_REGISTRY_PASSWORD; it is never printed. Needs
confluent-kafka[avro] (scripts/pyenv installs the pinned version).
"""

import argparse
import datetime
import json
import os
import random
import sys
import uuid

from confluent_kafka import KafkaException, SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "..", "schemas", "customer_event.avsc")

EVENT_TYPES = ["page_view", "search", "add_to_cart", "purchase", "support_message", "login"]
CITIES = [("Berlin", "10115", "DE"), ("Paris", "75001", "FR"), ("Singapore", "018956", "SG"),
          ("Hanoi", "100000", "VN"), ("London", "SW1A 1AA", "GB"), ("San Francisco", "94103", "US")]


def log(msg):
    print(f"producer.py: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Produce raw customer events, Confluent-framed Avro.")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port[,host:port]")
    p.add_argument("--registry", required=True, help="schema registry URL (Confluent API)")
    p.add_argument("--topic", default="raw.customer-events", help="topic to write (default raw.customer-events)")
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help="writer schema (default: the repository's schemas/customer_event.avsc)")
    p.add_argument("--count", type=int, default=10, help="number of events to generate (default 10)")
    p.add_argument("--subject-prefix", default="py-subject", help='subject ids are "<prefix>-<i>" (default py-subject)')
    p.add_argument("--jurisdiction", default="gdpr", help="jurisdiction of the generated events (default gdpr)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for reproducible events")
    p.add_argument("--events", default=None, help='JSON-lines file of events to publish as given ("-": stdin), instead of generating')
    p.add_argument("--registry-user", default=None, help="registry basic-auth user")
    p.add_argument("--registry-password", default=None, help="registry basic-auth password (default: $SCHEMA_REGISTRY_PASSWORD)")
    p.add_argument("--security-protocol", default=None, help="Kafka security.protocol (default SSL when --ca-file is given)")
    p.add_argument("--ca-file", default=None, help="PEM CA bundle to verify the brokers and the registry")
    p.add_argument("--cert-file", default=None, help="PEM client certificate (mutual TLS)")
    p.add_argument("--key-file", default=None, help="PEM client key for --cert-file")
    return p.parse_args(argv)


def generate(a):
    """Valid events for every field of schemas/customer_event.avsc."""
    rng = random.Random(a.seed)
    base = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    for i in range(a.count):
        city, postal, country = rng.choice(CITIES)
        event_type = rng.choice(EVENT_TYPES)
        purchase = event_type == "purchase"
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "subject_id": f"{a.subject_prefix}-{i}",
            "event_type": event_type,
            "event_time": base - datetime.timedelta(seconds=a.count - i),
            "jurisdiction": a.jurisdiction,
            "gpc": rng.random() < 0.1,
            "name": f"Customer {i}",
            "email": f"customer{i}@example.com",
            "phone": f"+49 30 {rng.randrange(10**7):07d}",
            "address": {"street": f"{rng.randrange(1, 200)} Example Street", "city": city,
                        "postal_code": postal, "country": country},
            "ip_address": f"192.0.2.{rng.randrange(1, 255)}",  # TEST-NET-1
            "device_id": f"device-{rng.getrandbits(32):08x}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) example/1.0",
            "location": {"lat": round(rng.uniform(-60, 60), 6), "lon": round(rng.uniform(-180, 180), 6)},
            "birth_date": datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(20000)),
            "gender": rng.choice(["female", "male", "nonbinary", None]),
            "page_url": f"https://shop.example.com/products/{rng.randrange(1000)}",
            "order_amount": round(rng.uniform(5, 500), 2) if purchase else None,
            "currency": "EUR" if purchase else None,
            "card_number": "4111 1111 1111 1111" if purchase else None,
            "message": f"Hi, please call me at +49 30 1234567 about order {i}" if event_type == "support_message" else None,
        }


def logical_fields(schema):
    """Top-level field names whose (possibly nullable) type is timestamp-millis or date."""
    out = {}
    for f in schema.get("fields", []):
        for t in f["type"] if isinstance(f["type"], list) else [f["type"]]:
            if isinstance(t, dict) and t.get("logicalType") in ("timestamp-millis", "date"):
                out[f["name"]] = t["logicalType"]
    return out


def from_file(path, schema):
    """Events of a JSON-lines file, with ISO timestamps and dates parsed."""
    logical = logical_fields(schema)
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: {e}") from e
            for name, lt in logical.items():
                v = ev.get(name)
                if isinstance(v, str):
                    if lt == "date":
                        ev[name] = datetime.date.fromisoformat(v)
                    else:
                        ev[name] = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            yield ev


def registry_conf(a):
    conf = {"url": a.registry}
    password = a.registry_password if a.registry_password is not None else os.environ.get("SCHEMA_REGISTRY_PASSWORD")
    if a.registry_user:
        conf["basic.auth.user.info"] = f"{a.registry_user}:{password or ''}"
    for opt, key in (("ca_file", "ssl.ca.location"), ("cert_file", "ssl.certificate.location"), ("key_file", "ssl.key.location")):
        if getattr(a, opt):
            conf[key] = getattr(a, opt)
    return conf


def main(argv=None):
    a = parse_args(argv)
    with open(a.schema, encoding="utf-8") as f:
        schema_str = f.read()
    schema = json.loads(schema_str)
    serializer = AvroSerializer(SchemaRegistryClient(registry_conf(a)), schema_str,
                                conf={"auto.register.schemas": True})
    conf = {
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "key.serializer": StringSerializer("utf_8"),
        "value.serializer": serializer,
    }
    protocol = a.security_protocol or ("SSL" if a.ca_file or a.cert_file else None)
    if protocol:
        conf["security.protocol"] = protocol
    for opt, key in (("ca_file", "ssl.ca.location"), ("cert_file", "ssl.certificate.location"), ("key_file", "ssl.key.location")):
        if getattr(a, opt):
            conf[key] = getattr(a, opt)
    producer = SerializingProducer(conf)

    events = from_file(a.events, schema) if a.events else generate(a)
    results, failed = [], []

    def delivered(ev):
        def report(err, msg):
            if err is not None:
                failed.append(f"{ev.get('event_id')}: {err}")
            else:
                results.append({"event_id": ev.get("event_id"), "subject_id": ev.get("subject_id"),
                                "partition": msg.partition(), "offset": msg.offset()})
        return report

    sent = 0
    try:
        for ev in events:
            while True:
                try:
                    producer.produce(a.topic, key=ev.get("subject_id"), value=ev, on_delivery=delivered(ev))
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.5)
            producer.poll(0)
            sent += 1
    except (KafkaException, ValueError, OSError) as e:
        log(f"error: {e}")
        producer.flush(30)
        return 1
    left = producer.flush(30)
    for r in results:
        print(json.dumps(r), flush=True)
    for f in failed:
        log(f"not delivered: {f}")
    if left or failed:
        log(f"{len(failed) + left} of {sent} events not delivered")
        return 1
    log(f"produced {sent} events to {a.topic} (subject {a.topic}-value)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
