"""Pure UI functions returning rx.Component; no I/O."""
