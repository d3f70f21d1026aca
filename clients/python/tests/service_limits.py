"""The limits the SDK tests' service runs with (conftest.py), for the tests that provoke them."""

MAX_BODY_BYTES = 256 * 1024
MAX_RESULT_BYTES = 64 * 1024
# The body must carry --max-files-bytes in base64 (the service checks at start).
MAX_FILES_BYTES = 128 * 1024
