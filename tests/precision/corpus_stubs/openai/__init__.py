"""Stand-in for openai<1 (test data support): tatsu-lab/stanford_alpaca's utils.py imports openai.openai_object
at import time for its data-generation helpers, which training never calls. Only on the PYTHONPATH of the
alpaca runs in tests/precision/test_precision_corpus_trainer.py."""
