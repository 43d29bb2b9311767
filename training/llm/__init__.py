"""The vision LLM (OpenAI-compatible chat API): classifying and captioning dataset images."""
