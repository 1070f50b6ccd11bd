"""Text: tokenizer specs (``tokenizer``), vocabulary building (``vocab``) and vocabulary files (``vocabfile``)."""
