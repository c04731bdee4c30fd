"""The Python client: signaling over WebSockets (and, in time, media) for tests, benchmarks and operators."""
