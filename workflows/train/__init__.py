"""Training scripts for the miniature world's tokenizer and generator."""
