"""One module per viewer page; each exposes `render(ctx)`."""
