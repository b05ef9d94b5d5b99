"""Studies: a grid of runs (`jessl sweep`), and the table and figure they answer (`jessl report`).

    grid.py     grid -> points, each named by its overrides
    study.py    a study file: base config, fixed overrides, grid, seeds, metric, plot keys
    sweep.py    the points as run folders with their configs, a manifest, a lock; run_sweep
    local.py    the points as local `jessl train` processes, N at a time, splitting the cores
    slurm.py    the points as one SLURM job array through submitit
    report.py   run folders -> a markdown / JSON table of metric and cost, a line plot or heatmap

Imports train, eval and config; nothing but the command line imports it.
"""
