"""``python -m rserver``: the same command line as the ``rserver`` script."""
from .cli import main

if __name__ == "__main__":
    main()
