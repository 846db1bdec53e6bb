"""ReDial data: readers and validation (``redial``), the toy generator (``toy``), turn building (``turns``)
and sample processing (``process``)."""
