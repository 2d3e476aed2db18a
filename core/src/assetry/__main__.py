"""``python -m assetry`` runs the command line (in a running daemon if there is one)."""

from assetry._launch import main

main()
