"""The engine: claims queued jobs, drives them on a ComfyUI backend, stores what comes back."""
