"""The bottom layer, imported by everything and importing nothing of embtool's but the version:
errors, atomic writes and the registry of a command's inputs, JSON output, the table file's
format (``tablefile``: header, dtypes, streaming) and where hub files come from (``hub``)."""
