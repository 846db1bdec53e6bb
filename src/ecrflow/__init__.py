"""ecrflow: the library behind the ECR (empathetic conversational recommender) Snakemake workflow.

Modules, in pipeline order:
- ``data``: ReDial readers and validation, the toy dataset generator, sample processing;
- ``kg``: entity/relation ids, KG edge tensors for RGCN, item ids;
- ``cooccurrence``: the emotion-filtered entity co-occurrence ("global entities"), sparse;
- ``baselines`` and ``evaluate``: non-neural reference recommenders and ranking metrics;
- ``config``: config validation against the workflow schema, config sections as typed dataclasses.

Each stage package (``data``, ``kg``, ``tables``, ``emotion``, ``generate``, ``recommend``, ``judge``,
``report``) has a ``steps`` module: one function per workflow rule, named as the rule, which the rule's
script in ``workflow/scripts/`` calls through :func:`ecrflow.smk.run`.
"""

__version__ = "0.1.0"
