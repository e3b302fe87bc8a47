"""Debezium change streams from Apache Kafka into `raw` (DESIGN §2.1, §3), with kafka-python.

A run is bounded: partitions of the topics matching `settings.kafka_topic_pattern` are assigned by
hand (no group rebalancing) and sought to the DuckDB stream ledger's positions (source `kafka`),
never to Kafka's committed offsets. Each micro-batch lands in one DuckDB transaction with its
ledger positions; only after that commit are its offsets committed to the consumer group, for lag
monitoring. A process killed at any point loses nothing and duplicates nothing: the ledger moves
with the rows, and positions already landed are skipped on replay.

The modules, by role (each imports only those above it):

- `client`: the connection to Kafka shared by all: consumer settings, topic matching,
  `KafkaUnavailableError`.
- `offsets`: where the ledger stands against the topics: `end_offsets`, `lag`, `consumer_lag`
  (the lag sensor and the asset metadata; they never consume), `partitions_for_topic`.
- `fetcher`: one consumer's side of a run: assign, seek, poll, decode (`land.decode_batch`),
  commit offsets.
- `prefetch`: the same fetchers in forked child processes, so that polling and decoding overlap
  the parent's DuckDB writes.
- `consumer`: `consume`, the run itself: plans it, lands each batch (`land.land_decoded`).
- `producer`: `publish` and `ensure_topics` (tests, benchmarks).
- `__main__`: the command line, `python -m pipelines.lib.cdc.kafka --help` (the same run outside
  Dagster; also the kill test's subprocess).
"""
