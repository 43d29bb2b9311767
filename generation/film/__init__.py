"""Film media (Django-free helpers plus the assembly service): frames of stored clips, joined films."""
