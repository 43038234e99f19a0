"""The subcommands of `python -m xr`, one module per concept; each registers its own parsers."""
