"""Data sets -> posts: the layouts people have their posts in (``formats/``), the records
and hashtags read from them, and the :class:`~recommender.data.datasets.Dataset` they make."""
