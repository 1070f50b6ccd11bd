"""The transformer the trainer trains, and nothing of training: ``transformer`` (the model and
its config), ``layers`` (attention, Post-LN/Pre-LN/Admin sub-layers), ``pooling`` (the
classifier's head) and ``dropout`` (a CPU-cheap mask). Imports ``core`` and ``tables`` only."""
