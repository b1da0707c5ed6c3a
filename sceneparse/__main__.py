"""`python -m sceneparse ...` is the same as the `sceneparse` command (and what torchrun runs)."""
from sceneparse.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
