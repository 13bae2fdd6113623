"""Analysis of experiment folders: loading runs and sweeps into pandas."""
