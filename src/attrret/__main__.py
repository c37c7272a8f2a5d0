"""``python -m attrret`` (also what ``torchrun -m attrret train ...`` runs on every rank)."""

from attrret.cli import main

if __name__ == "__main__":
    main()
