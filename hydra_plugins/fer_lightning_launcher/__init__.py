"""fer_lightning's Hydra launcher (Hydra loads launchers from the ``hydra_plugins`` package
only): ``hydra/launcher=local`` with each job's share of the cores."""
