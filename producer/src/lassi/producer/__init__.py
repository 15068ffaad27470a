"""lassi.producer: the producer role of LASSI."""
