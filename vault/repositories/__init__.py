"""Queries, one module per table family. Functions take a Session; they add, flush and select."""
