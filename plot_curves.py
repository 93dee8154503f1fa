"""Plot loss, learning rate and every validation score of one or several runs to PNG:
python plot_curves.py RUN... [--out curves.png] [--labels NAME...] (ptsemseg/curves.py)."""
from ptsemseg.cli import guarded
from ptsemseg.curves import main

if __name__ == "__main__":
    guarded(main)
