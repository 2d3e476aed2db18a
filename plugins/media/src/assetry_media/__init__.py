"""assetry plugin."""
