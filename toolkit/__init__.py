"""What every allava tool shares, below the four packages: the command-line kit (help, one-line errors, exit codes),
the append-only JSONL store and atomic writer, secret scrubbing and cost text. Standard library only; imports
nothing of the repo."""
