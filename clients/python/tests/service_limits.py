"""The limits the SDK tests' service runs with (conftest.py), for the tests that provoke them."""

MAX_BODY_BYTES = 256 * 1024
MAX_RESULT_BYTES = 64 * 1024
