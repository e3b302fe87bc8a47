"""Change data capture: Debezium envelopes (DESIGN §2.1-2.3) decoded and landed in `raw`.

- `decode`: envelopes -> typed values (schema-driven, or contract-driven for our tables).
- `land`: Kafka records -> raw rows, dead letters and the stream ledger, in one transaction.
- `files`: the embedded mode, Kafka records read from `<landing>/cdc/*.ndjson`.
"""
