"""The miniature world: scenes a CPU can learn, their GenEval prompts, and its image tokenizer."""
