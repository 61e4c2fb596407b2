"""The citizen's encrypted vault: keys, streams, encrypted chunks, audit, export and erasure."""
