"""Imported by the sandbox's fork server, once: the parsers are imported and each has read a
small document, so every conversion forked from it starts warm (trafilatura alone spends
about 150 ms on its first page)."""

import warnings

from rag_query.conversion import media
from rag_query.conversion.converters import convert
from rag_query.conversion.errors import ConversionError

_SAMPLE_HTML = (
    b"<html><head><title>Warm</title></head><body><main><h1>Warm</h1>"
    b"<p>A first page read once, so that later pages are read warm.</p></main></body></html>"
)

try:
    convert(_SAMPLE_HTML, media.HTML, 10_000)
except ConversionError:
    pass  # warm either way

# A program started as `python -m pkg.tool` is run again in each child (multiprocessing's
# rule); it was imported here already, which runpy would warn about on every file.
warnings.filterwarnings("ignore", "'.*' found in sys.modules after import", RuntimeWarning)
