"""Review: the keyboard approval queue, rejection feedback into prompts, promotion to references."""
