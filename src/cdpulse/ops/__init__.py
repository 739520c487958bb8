"""Operations: metrics and health."""
