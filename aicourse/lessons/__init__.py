"""Code written once in the notebooks and exported here by `aicourse export`.

One module per notebook, named after it (``10_convolution.ipynb`` -> ``convolution``).
Do not edit these modules by hand: tests/test_export.py fails when they drift
from their notebooks.
"""
