"""patch()/unpatch(): the replacement factories and creation-site scoping."""
