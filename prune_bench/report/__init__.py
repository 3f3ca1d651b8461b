"""Records -> tables beside the published numbers, and plots."""
