"""Movie production in quality: scenes planned into segments and chained by last frame (``plan``, ``chain``),
their joins gated and corrected (``joins``, ``feedback``, ``learning``)."""
