"""One module per op family: its shape rule, forward and backward, defined once."""
