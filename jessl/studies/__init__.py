"""Studies: a grid of runs (`jessl sweep`), and the table and figure they answer (`jessl report`).

    grid.py     grid -> points, each named by its overrides
    study.py    a study file: base config, fixed overrides, grid, seeds, metric, plot keys
    sweep.py    the points as run folders, run here (N at a time) or as a SLURM array; a manifest
    report.py   run folders -> a markdown / JSON table of metric and cost, a line plot or heatmap

Imports train, eval and config; nothing but the command line imports it.
"""
