"""Ingest: what may enter the similar-case corpus, and the steps that put it there."""
