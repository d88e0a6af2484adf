"""The ablation runner's code; scripts/ablate.py is its command.

    config.py     ablation YAMLs: variants, their model and hyp files, the runs in a stable order, shards, --index
    prepare.py    on the driver, before anything trains: variants checked, data, paired initial weights -> a Job
    run.py        one run wherever it executes: train.py (or --resume), val.py on best.pt -> its record
    records.py    one self-contained JSON per run; records from any folders merge
    report.py     results.md, results.csv and two figures, from records only
    executors/    where runs execute, interchangeable: local threads, Ray tasks, a SLURM array
"""
