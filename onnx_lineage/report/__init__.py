"""Reports rendered from result objects only: self-contained HTML with plots, and Markdown."""
