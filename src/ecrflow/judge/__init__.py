"""Subjective evaluation (Table 2): the LLM judge (``scoring``), the contexts and the judged sample
(``contexts``), the zero-shot LLM baselines (``baselines``) and the tables with their statistics
(``tables``: kappa on rankings, bootstrap intervals)."""
