"""Result tables that need no trained model (``steps``: the dataset statistics, the non-neural baselines of
:mod:`ecrflow.baselines`)."""
