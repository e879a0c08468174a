"""Polymarket CLOB market channel: frame parsing and books (`protocol`), the per-shard
websocket client (`client`), the Bytewax price source (`source`)."""
