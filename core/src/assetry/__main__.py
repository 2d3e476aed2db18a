"""``python -m assetry`` runs the command line."""

from assetry.cli import main

main()
