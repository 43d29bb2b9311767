"""Ingestion: uploads, zip archives, videos, URLs (yt-dlp) and ComfyUI output folders → dataset images."""
