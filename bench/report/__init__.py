"""Rendering a run: the document model, its sections, Markdown/HTML/CSV and the charts."""
