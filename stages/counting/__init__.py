"""Counting questions: the datasets (schemas, loading, sources) and scoring answers to them."""
