"""`python -m bot.cli`: the same as the `ftbot` console script."""

from bot.cli import main

main()
