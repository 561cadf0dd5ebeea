"""Test data for retrieval: fixture builders and the evaluation set (retrieval_eval.json)."""
