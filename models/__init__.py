"""Trained pipeline parts shipped with corpus-nlp (data only; see operators/default_model.py)."""
