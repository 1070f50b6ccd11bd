"""Tables in and out: ``sources`` (GloVe, word2vec, fastText, Hugging Face checkpoints, archives)
and ``alignment`` to a vocabulary on the way in; ``export`` (word2vec text/binary, npy) and
``inject`` (into a Hugging Face model folder) on the way out. Imports ``core``, ``text``, ``tables``."""
