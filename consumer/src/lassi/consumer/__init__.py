"""lassi.consumer: the consumer role of LASSI."""
