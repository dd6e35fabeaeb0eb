"""Enrolment: which of a performer's faces go into an index (selection) and the embeddings kept
between builds (embedding cache), independent of where the faces came from (sources)."""
