"""trainingbot service: configuration, command line and chat channels."""
