"""One module per subcommand: parse options, call the library, print or write."""
