"""Reports of a pipeline run: an HTML page with plots and a Markdown summary, built from its files."""
