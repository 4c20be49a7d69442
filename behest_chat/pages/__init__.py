"""One module per route; each composes components and binds on_load."""
