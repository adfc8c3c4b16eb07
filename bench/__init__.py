"""Benchmarks: the app's hot paths side by side with Apache Kafka's own tools and two peers.

``python -m bench.run`` (``make bench``) is the entry point; see bench/run.py.
"""
