"""Shard format: codecs, atomic writer, index, reader and verification."""
