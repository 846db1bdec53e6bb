"""Emotion-aligned response generation: reviews, knowledge prompts, generators, inference, metrics."""
