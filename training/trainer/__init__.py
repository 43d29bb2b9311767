"""Training: kohya sd-scripts jobs in a queue per GPU, progress, and the LoRA registry."""
