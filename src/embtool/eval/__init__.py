"""Intrinsic evaluation of tables: word analogies (Table 4), word similarity, benchmark files."""
