"""An embedding table and everything done to one: ``table`` (the object, load/save), ``interop``
(gensim and Hugging Face views of it), ``transforms`` (standardize, shuffle, scale, posenc),
``positional``, ``stats`` and ``statplot``, ``filling`` (rows the source lacks), ``resize``,
``doctor`` and ``naming`` (a table's and a run's short name). Imports ``core`` and ``text`` only."""
