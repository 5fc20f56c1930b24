"""What the page and the CLI show: plain data and text, no model logic."""
