"""Emotion labels made by the pipeline: LLM annotation of a sample of seeker utterances, the mapping of
free-form emotion words to the nine types, a focal-loss classifier, labelled dialogues (ECR_SPEC 1.1)."""
