"""Tests of the matching core: tokenisation, the query language, the index and scoring."""
