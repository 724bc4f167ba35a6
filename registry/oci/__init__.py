"""Pure OCI domain logic: names, digests, media types, manifests. No I/O here."""
