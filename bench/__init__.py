"""acflow benchmark: acflow vs tshark on bulk AnyConnect captures made by the lab (see bench/README.md)."""
