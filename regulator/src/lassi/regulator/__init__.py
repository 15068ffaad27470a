"""LASSI regulator: data, Glow flow, attribute vectors and similarity specs."""
