"""One module per `sr` subcommand: HELP, EXAMPLES, add_arguments(parser) and run(args) -> exit code."""
