"""Sub-commands of ``genreg``; see :data:`genreg_viewer.cli.main.COMMAND_MODULES`."""
