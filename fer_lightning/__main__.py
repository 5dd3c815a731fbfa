"""``python -m fer_lightning``: see fer_lightning.train."""

from fer_lightning.train import main

if __name__ == "__main__":
    main()
