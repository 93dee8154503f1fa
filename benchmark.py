"""Train what is missing, evaluate every run and write the seed README's tables:
python benchmark.py SOURCE... [--train] [--opts KEY=VALUE ...] [--out DIR] (ptsemseg/benchmark_tables.py)."""
from ptsemseg.benchmark_tables import main
from ptsemseg.cli import guarded

if __name__ == "__main__":
    guarded(main)
