"""Quality's writes: scoring a job's outputs, the post-generation gate and regeneration, phase
gates, reference embeddings and on-demand evaluation. One module per topic."""
